"""The readers of what TensorRT's tools write on the target (cp_debug/backends/trt_dumps.py), on files written as
their producers write them: polygraphy's RunResults by the polygraphy CLI itself (ONNX Runtime in TensorRT's
place: the same RunResults format), trtexec's files by `trtexec_writer.py`, which follows TensorRT's own
sources line by line (see its docstring)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from cp_debug.backends import trt_dumps
from cp_debug.errors import BadInputError
from tests.backends import trtexec_writer


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# -- polygraphy RunResults, written by the polygraphy CLI -----------------------------------------------------------
def _polygraphy(*args: str, cwd) -> None:
    done = subprocess.run(["polygraphy", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def polygraphy_run(tiny, tmp_path_factory):
    """`polygraphy run tiny.onnx --onnxrt --onnx-outputs mark all`: one file, and a folder of two iterations."""
    out = tmp_path_factory.mktemp("polygraphy")
    _polygraphy("run", str(tiny.path), "--onnxrt", "--onnx-outputs", "mark", "all", "--save-inputs", "inputs.json",
                "--save-outputs", "results.json", cwd=out)
    _polygraphy("run", str(tiny.path), "--onnxrt", "--iterations", "2", "--save-outputs", "per_iteration", cwd=out)
    return out


def test_polygraphy_results_hold_every_marked_tensor_as_onnx_runtime_computes_it(tiny, polygraphy_run):
    import onnx
    from polygraphy.json import load_json

    from cp_debug.graph.model import expose_outputs
    from cp_debug.graph.session import run_ort

    runs = trt_dumps.read_polygraphy_results(polygraphy_run / "results.json")
    assert len(runs) == 1
    runner, iterations = runs[0]
    assert runner.startswith("onnxrt-runner") and len(iterations) == 1
    model = onnx.load(str(tiny.path))
    computed = [o for n in model.graph.node for o in n.output]
    assert set(iterations[0]) == set(computed)  # every node output was marked, and nothing else came back
    feed = load_json(str(polygraphy_run / "inputs.json"))[0]
    expected = run_ort(expose_outputs(model, computed), dict(feed))
    for name, arr in iterations[0].items():
        assert isinstance(arr, np.ndarray)
        np.testing.assert_allclose(arr, expected[name], rtol=1e-5, atol=1e-6)


def test_polygraphy_results_folder_is_read_in_iteration_order(polygraphy_run):
    runs = trt_dumps.read_polygraphy_results(polygraphy_run / "per_iteration")
    assert len(runs) == 1 and len(runs[0][1]) == 2
    first, second = runs[0][1]
    assert set(first) == set(second) == {"out", "mean"}
    assert not np.array_equal(first["out"], second["out"])  # polygraphy feeds each iteration other random data


def test_damaged_polygraphy_results_are_refused_in_one_line(polygraphy_run, tmp_path):
    text = (polygraphy_run / "results.json").read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(BadInputError) as err:
        trt_dumps.read_polygraphy_results(cut)
    assert "cut.json" in _one_line(err) and "re-copy" in str(err.value)

    other = tmp_path / "inputs.json"  # valid polygraphy JSON, but a list of feeds, not a RunResults
    other.write_text((polygraphy_run / "inputs.json").read_text())
    with pytest.raises(BadInputError) as err:
        trt_dumps.read_polygraphy_results(other)
    assert "not a complete polygraphy RunResults" in _one_line(err)

    with pytest.raises(BadInputError) as err:
        trt_dumps.read_polygraphy_results(tmp_path / "absent.json")
    assert "not found" in _one_line(err)


# -- trtexec numpy debug-tensor dumps, written as debugTensorWriter.cpp writes them -------------------------------
@pytest.fixture(scope="module")
def backbone():
    """The tiny preset's backbone/neck/head stage as the project exports it: its computed tensors, in graph order."""
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    model = centerpoint_subject("tiny", random_weights=True, trace_side=64).stages[1].onnx()
    return model, [o for n in model.graph.node for o in n.output]


def _values(i: int) -> np.ndarray:
    return np.random.RandomState(i).randn(1, 3, 2).astype(np.float32) * 100


def test_file_names_and_headers_are_trtexec_s(tmp_path):
    # trtexec's header for a (2, 3) float32: 61 characters, padded by 16 - ((10 + 61 + 1) % 16) = 8 spaces, "\n"
    data = trtexec_writer.numpy_file_bytes(np.zeros((2, 3), np.float32), "<f4")
    assert data[8:10] == (70).to_bytes(2, "little")
    assert data[10:80] == b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, ), }" + b" " * 8 + b"\n"
    assert trt_dumps.dump_file_name(7, "/pts_backbone/blocks.0/Conv_output_0", "HALF") == \
        "0007__pts_backbone_blocks.0_Conv_output_0.npy"
    assert trt_dumps.dump_file_name(12345, "a:b", "bf16") == "12345_a_b_to_float.npy"
    long = "/pts_bbox_head/task_heads.0/" * 8 + "Conv_output_0"
    for truncate in (True, False):
        name = trt_dumps.dump_file_name(3, long, "float32", truncate=truncate)
        assert name == trtexec_writer.gen_filename_safe_string(f"0003_{long}.npy", truncate=truncate)
    assert len(trt_dumps.dump_file_name(3, long, "FLOAT")) == 73 + 3 + 73  # (150 - 3) // 2 on each side
    assert trt_dumps.mangle("é") == "__"  # two UTF-8 bytes, two "_", as the C++ loop over the string's bytes


def test_every_dump_of_the_backbone_resolves_to_its_onnx_tensor(backbone, tmp_path):
    _, names = backbone
    tensors = [(n, _values(i), "HALF" if i % 3 == 0 else "FLOAT") for i, n in enumerate(names)]
    trtexec_writer.write_debug_dumps(tmp_path, tensors + [("Reformatted Output Tensor 0 to heatmap", _values(0),
                                                           "FLOAT")])
    dumps = trt_dumps.read_debug_dumps(tmp_path, names)
    assert set(dumps.files) == set(names) and not dumps.ambiguous and dumps.runs == 1
    assert dumps.unknown == (trt_dumps.dump_file_name(len(names), "Reformatted Output Tensor 0 to heatmap",
                                                      "FLOAT"),)
    for i, n in enumerate(names):
        got = dumps.load(n)
        assert got.dtype == np.float32
        if i % 3 == 0:
            assert dumps.dtypes[n] == "HALF"
            np.testing.assert_array_equal(got, _values(i).astype(np.float16).astype(np.float32))
        else:
            assert dumps.dtypes[n] == "FLOAT"
            np.testing.assert_array_equal(got, _values(i))
    assert json.loads(json.dumps(dumps.to_json()))["files"][names[0]].startswith("0000_")


def test_names_trtexec_mangles_alike_are_ambiguous_unless_the_summary_names_them(backbone, tmp_path):
    _, names = backbone
    twin = names[2].replace("/", "_")  # a foreign graph's name that gives the same file name
    assert trt_dumps.mangle(twin) == trt_dumps.mangle(names[2]) and twin != names[2]
    tensors = [(n, _values(i), "FLOAT") for i, n in enumerate(names[:5])]
    trtexec_writer.write_debug_dumps(tmp_path / "plain", tensors)
    dumps = trt_dumps.read_debug_dumps(tmp_path / "plain", [*names, twin])
    [(file_name, owners)] = dumps.ambiguous.items()
    assert file_name.startswith("0002_") and set(owners) == {names[2], twin}
    assert names[2] not in dumps.files and twin not in dumps.files
    with pytest.raises(BadInputError) as err:
        dumps.load(names[2])
    assert "cannot be told" in _one_line(err)

    trtexec_writer.write_debug_dumps(tmp_path / "summary", tensors, summary=True)
    dumps = trt_dumps.read_debug_dumps(tmp_path / "summary", [*names, twin])
    assert dumps.resolved_by == "tensor_summary.json" and not dumps.ambiguous
    assert set(dumps.files) == set(names[:5])
    np.testing.assert_array_equal(dumps.load(names[2]), _values(2))


def test_long_names_are_cut_as_trtexec_cuts_them(backbone, tmp_path):
    _, names = backbone
    scope = "/pts_bbox_head/task_heads.0/reg/reg.0/reg.0.0/"  # (uncut, over 255 bytes, no file system takes them)
    unique = scope * 2 + "unique_branch/" + names[0]
    twins = [scope * 2 + f"branch_{k}/" + scope + names[1] for k in (1, 2)]  # differ only inside the cut middle
    tensors = [(unique, _values(0), "FLOAT"), (twins[0], _values(1), "BF16"), (names[3], _values(3), "FLOAT")]
    for truncate in (True, False):  # TensorRT >= 10.13 cuts names over 150 characters, 10.12 did not
        folder = tmp_path / str(truncate)
        written = trtexec_writer.write_debug_dumps(folder, tensors, truncate=truncate)
        assert (len(written[0].name) == 149) is truncate
        dumps = trt_dumps.read_debug_dumps(folder, [*names, unique, *twins])
        assert dumps.files[unique] == written[0] and dumps.files[names[3]] == written[2]
        if truncate:
            assert dumps.ambiguous == {written[1].name: tuple(sorted(twins))}
        else:
            assert twins[0] in dumps.files and dumps.dtypes[twins[0]] == "BF16|FP8|FP4"


def test_a_folder_of_several_inferences_keeps_the_first(backbone, tmp_path):
    _, names = backbone
    trtexec_writer.write_debug_dumps(tmp_path, [(n, _values(i), "FLOAT") for i, n in enumerate(names[:4])], runs=3)
    dumps = trt_dumps.read_debug_dumps(tmp_path, names)
    assert dumps.runs == 3 and dumps.files[names[1]].name.startswith("0001_")


def test_damaged_dumps_are_refused_in_one_line(backbone, tmp_path):
    _, names = backbone
    written = trtexec_writer.write_debug_dumps(tmp_path, [(n, _values(i), "FLOAT") for i, n in enumerate(names[:3])])
    whole = written[1].read_bytes()
    written[1].write_bytes(whole[:-4])  # the copy stopped short
    with pytest.raises(BadInputError) as err:
        trt_dumps.read_debug_dumps(tmp_path, names)
    assert written[1].name in _one_line(err) and "cut short" in str(err.value)
    written[1].write_bytes(b"not a numpy file at all")
    with pytest.raises(BadInputError) as err:
        trt_dumps.read_debug_dumps(tmp_path, names)
    assert "not a complete .npy" in _one_line(err)
    written[1].write_bytes(whole)
    (tmp_path / "tensor_summary.json").write_text('{\n  "metadata": {},\n  "tensors": [\n')  # trtexec died
    with pytest.raises(BadInputError) as err:
        trt_dumps.read_debug_dumps(tmp_path, names)
    assert "tensor summary" in _one_line(err)
    with pytest.raises(BadInputError) as err:
        trt_dumps.read_debug_dumps(tmp_path / "absent", names)
    assert "not found" in _one_line(err)

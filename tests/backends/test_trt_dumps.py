"""The readers of what TensorRT's tools write on the target (cp_debug/backends/trt_dumps_*.py), on files written
as their producers write them: polygraphy's RunResults by the polygraphy CLI itself (ONNX Runtime in TensorRT's
place: the same RunResults format), trtexec's files by `trtexec_writer.py`, which follows TensorRT's own
sources line by line (see its docstring)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cp_debug.backends.trt.trt_dumps_layer_info import precision_mismatches, read_layer_info, unobservable
from cp_debug.backends.trt.trt_dumps_numpy import dump_file_name, mangle, read_debug_dumps
from cp_debug.backends.trt.trt_dumps_outputs import read_trtexec_outputs
from cp_debug.backends.trt.trt_dumps_polygraphy import read_polygraphy_results
from cp_debug.errors import BadInputError
from tests.backends import trtexec_writer


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# -- polygraphy RunResults, written by the polygraphy CLI -----------------------------------------------------------
def _polygraphy(*args: str, cwd) -> None:
    """`polygraphy ARGS` in `cwd`, through the CLI's entry point (`polygraphy.tools:main`, what the `polygraphy`
    command runs) in this process: the files are what the CLI writes; a process of its own would only add its
    start (Python, ONNX Runtime and polygraphy imported again, about 3 CPU seconds a run)."""
    import contextlib

    from polygraphy.tools import main

    with contextlib.chdir(cwd):
        assert main(list(args)) == 0, args


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

    runs = read_polygraphy_results(polygraphy_run / "results.json")
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
    runs = read_polygraphy_results(polygraphy_run / "per_iteration")
    assert len(runs) == 1 and len(runs[0][1]) == 2
    first, second = runs[0][1]
    assert set(first) == set(second) == {"out", "mean"}
    assert not np.array_equal(first["out"], second["out"])  # polygraphy feeds each iteration other random data


def test_a_results_folder_is_read_without_polygraphy_0_53s_streaming_reader(polygraphy_run, monkeypatch):
    """polygraphy 0.49.x and 0.50.x have no `RunResults.load_streaming` / `concat` (0.53 added them): the folder
    0.53 writes is read file by file with `RunResults.load` whichever polygraphy reads it."""
    from polygraphy.comparator import RunResults

    for name in ("load_streaming", "concat", "split"):
        monkeypatch.delattr(RunResults, name, raising=False)
    runs = read_polygraphy_results(polygraphy_run / "per_iteration")
    assert len(runs) == 1 and len(runs[0][1]) == 2 and set(runs[0][1][0]) == {"out", "mean"}


def test_damaged_polygraphy_results_are_refused_in_one_line(polygraphy_run, tmp_path):
    text = (polygraphy_run / "results.json").read_text()
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(BadInputError) as err:
        read_polygraphy_results(cut)
    assert "cut.json" in _one_line(err) and "re-copy" in str(err.value)

    other = tmp_path / "inputs.json"  # valid polygraphy JSON, but a list of feeds, not a RunResults
    other.write_text((polygraphy_run / "inputs.json").read_text())
    with pytest.raises(BadInputError) as err:
        read_polygraphy_results(other)
    assert "not a complete polygraphy RunResults" in _one_line(err)

    with pytest.raises(BadInputError) as err:
        read_polygraphy_results(tmp_path / "absent.json")
    assert "not found" in _one_line(err)


# -- trtexec numpy debug-tensor dumps, written as debugTensorWriter.cpp writes them -------------------------------
@pytest.fixture(scope="module")
def backbone():
    """The tiny preset's backbone/neck/head stage as the project exports it: its computed tensors, in graph order."""
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    # the default trace side: the export the session's other tiny random-weights runs make (tests/lint, bisects)
    model = centerpoint_subject("tiny", random_weights=True).stages[1].onnx()
    return model, [o for n in model.graph.node for o in n.output]


def _values(i: int) -> np.ndarray:
    return np.random.RandomState(i).randn(1, 3, 2).astype(np.float32) * 100


def test_file_names_and_headers_are_trtexec_s(tmp_path):
    # trtexec's header for a (2, 3) float32: 61 characters, padded by 16 - ((10 + 61 + 1) % 16) = 8 spaces, "\n"
    data = trtexec_writer.numpy_file_bytes(np.zeros((2, 3), np.float32), "<f4")
    assert data[8:10] == (70).to_bytes(2, "little")
    assert data[10:80] == b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, ), }" + b" " * 8 + b"\n"
    assert dump_file_name(7, "/pts_backbone/blocks.0/Conv_output_0", "HALF") == \
        "0007__pts_backbone_blocks.0_Conv_output_0.npy"
    assert dump_file_name(12345, "a:b", "bf16") == "12345_a_b_to_float.npy"
    long = "/pts_bbox_head/task_heads.0/" * 8 + "Conv_output_0"
    for truncate in (True, False):
        name = dump_file_name(3, long, "float32", truncate=truncate)
        assert name == trtexec_writer.gen_filename_safe_string(f"0003_{long}.npy", truncate=truncate)
    assert len(dump_file_name(3, long, "FLOAT")) == 73 + 3 + 73  # (150 - 3) // 2 on each side
    assert mangle("é") == "__"  # two UTF-8 bytes, two "_", as the C++ loop over the string's bytes


def test_every_dump_of_the_backbone_resolves_to_its_onnx_tensor(backbone, tmp_path):
    _, names = backbone
    tensors = [(n, _values(i), "HALF" if i % 3 == 0 else "FLOAT") for i, n in enumerate(names)]
    trtexec_writer.write_debug_dumps(tmp_path, tensors + [("Reformatted Output Tensor 0 to heatmap", _values(0),
                                                           "FLOAT")])
    dumps = read_debug_dumps(tmp_path, names)
    assert set(dumps.files) == set(names) and not dumps.ambiguous and dumps.runs == 1
    assert dumps.unknown == (dump_file_name(len(names), "Reformatted Output Tensor 0 to heatmap",
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
    assert mangle(twin) == mangle(names[2]) and twin != names[2]
    tensors = [(n, _values(i), "FLOAT") for i, n in enumerate(names[:5])]
    trtexec_writer.write_debug_dumps(tmp_path / "plain", tensors)
    dumps = read_debug_dumps(tmp_path / "plain", [*names, twin])
    [(file_name, owners)] = dumps.ambiguous.items()
    assert file_name.startswith("0002_") and set(owners) == {names[2], twin}
    assert names[2] not in dumps.files and twin not in dumps.files
    with pytest.raises(BadInputError) as err:
        dumps.load(names[2])
    assert "cannot be told" in _one_line(err)

    trtexec_writer.write_debug_dumps(tmp_path / "summary", tensors, summary=True)
    dumps = read_debug_dumps(tmp_path / "summary", [*names, twin])
    assert dumps.resolved_by == "tensor_summary.json" and not dumps.ambiguous
    assert set(dumps.files) == set(names[:5])
    np.testing.assert_array_equal(dumps.load(names[2]), _values(2))


def test_a_name_the_summary_holds_unescaped_is_read_as_itself(backbone, tmp_path):
    """writeSummary writes a tensor's name (and writeSummaryHeader the engine's) without escaping it: a `"` or a
    `\\` in it would make the file invalid JSON and the whole folder refused."""
    _, names = backbone
    odd = ['/pts_head/"quoted"/out', "C:\\scope\\n\\Conv_output_0", names[0]]
    trtexec_writer.write_debug_dumps(tmp_path, [(n, _values(i), "FLOAT") for i, n in enumerate(odd)], summary=True,
                                     engine_name='graph "main"')
    dumps = read_debug_dumps(tmp_path, odd)
    assert dumps.resolved_by == "tensor_summary.json" and set(dumps.files) == set(odd) and not dumps.ambiguous
    np.testing.assert_array_equal(dumps.load(odd[1]), _values(1))


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
        dumps = read_debug_dumps(folder, [*names, unique, *twins])
        assert dumps.files[unique] == written[0] and dumps.files[names[3]] == written[2]
        if truncate:
            assert dumps.ambiguous == {written[1].name: tuple(sorted(twins))}
        else:
            assert twins[0] in dumps.files and dumps.dtypes[twins[0]] == "BF16|FP8|FP4"


def test_a_folder_of_several_inferences_keeps_the_first(backbone, tmp_path):
    _, names = backbone
    trtexec_writer.write_debug_dumps(tmp_path, [(n, _values(i), "FLOAT") for i, n in enumerate(names[:4])], runs=3)
    dumps = read_debug_dumps(tmp_path, names)
    assert dumps.runs == 3 and dumps.files[names[1]].name.startswith("0001_")


def test_damaged_dumps_are_refused_in_one_line(backbone, tmp_path):
    _, names = backbone
    written = trtexec_writer.write_debug_dumps(tmp_path, [(n, _values(i), "FLOAT") for i, n in enumerate(names[:3])])
    whole = written[1].read_bytes()
    written[1].write_bytes(whole[:-4])  # the copy stopped short
    with pytest.raises(BadInputError) as err:
        read_debug_dumps(tmp_path, names)
    assert written[1].name in _one_line(err) and "cut short" in str(err.value)
    written[1].write_bytes(b"not a numpy file at all")
    with pytest.raises(BadInputError) as err:
        read_debug_dumps(tmp_path, names)
    assert "not a complete .npy" in _one_line(err)
    written[1].write_bytes(whole)
    (tmp_path / "tensor_summary.json").write_text('{\n  "metadata": {},\n  "tensors": [\n')  # trtexec died
    with pytest.raises(BadInputError) as err:
        read_debug_dumps(tmp_path, names)
    assert "tensor summary" in _one_line(err)
    with pytest.raises(BadInputError) as err:
        read_debug_dumps(tmp_path / "absent", names)
    assert "not found" in _one_line(err)


# -- file names and formats against debugTensorWriter.cpp, per TensorRT version ---------------------------------
def _debug_facts() -> dict[str, dict[str, str]]:
    from tests.kit.source_lists import facts

    found = facts("debug_tensors")
    assert found, "tests/data/trt_sources/debug_tensors is empty: run benchmarks/trt_sources.py"
    return found


DEBUG_FACTS = _debug_facts()


def _name_from_facts(f: dict[str, str], index: int, name: str, trt_type: str) -> str:
    """The file a version's trtexec writes, built from its facts alone (genFilenameSafeString, the index prefix,
    writeNumpy's suffix and extension, and the order they are joined in)."""
    def safe(data: bytes) -> str:
        keep = f["allowed_punctuation"].encode()
        return "".join(chr(b) if (chr(b).isascii() and chr(b).isalnum()) or b in keep else f["replacement"]
                       for b in data)

    def gen(s: str) -> str:
        data = s.encode()
        if f["max_length"] == "none" or len(data) <= int(f["max_length"]):
            return safe(data)
        half = int(f["half_length"])
        return safe(data[:half]) + f["ellipsis"] + safe(data[-half:])

    descr = f[f"numpy_dtype {trt_type}"]
    suffix = descr.split(" suffix ")[1].split()[0] if " suffix " in descr else ""
    prefix = str(index).rjust(int(f["index_width"]), f["index_fill"]) + f["index_separator"]
    if f["numpy_name"] == "prefix+name made safe, then suffix and .npy appended":
        return gen(prefix + name) + suffix + f["numpy_extension"]
    assert f["numpy_name"] == "prefix+name+suffix+.npy made safe whole", f["numpy_name"]
    return gen(prefix + name + suffix + f["numpy_extension"])


@pytest.mark.parametrize("tag", sorted(DEBUG_FACTS))
def test_the_reader_names_and_reads_dumps_as_each_versions_writer_writes_them(tag, tmp_path):
    """TensorRT 10.12.0 ... 11.1, as their debugTensorWriter.cpp and common.h write (tests/data/trt_sources/
    debug_tensors/<tag>.txt, read from the sources by benchmarks/trt_sources.py): the mangling, the 150-character
    cut (10.13 on; 10.12 cuts nothing), the NNNN_ prefix, the suffixes and dtypes, the summary's file and keys."""
    from cp_debug.backends.trt import trt_dumps_numpy as tdn

    f = DEBUG_FACTS[tag]
    assert f["alnum_test"] == "std::isalnum(static_cast<unsigned char>(c))" and f["replacement"] == "_"
    assert f["allowed_punctuation"] == tdn._SAFE_PUNCTUATION
    cuts = f["max_length"] != "none"
    if cuts:
        assert (int(f["max_length"]), int(f["half_length"]), f["ellipsis"]) == (tdn._MAX_NAME, tdn._HALF, "...")
    assert (f["index_width"], f["index_fill"], f["index_separator"], f["index_counts"]) == \
        ("4", "0", "_", "every callback")
    written = {k.split()[1]: v for k, v in f.items() if k.startswith("numpy_dtype ")}
    for kind, how in written.items():
        if how == "not written":
            assert kind not in tdn._NUMPY_OF  # E8M0
            continue
        descr, _, rest = how.partition(" ")
        suffix = rest.split()[1] if rest.startswith("suffix ") else ""
        assert tdn._NUMPY_OF[kind] == (descr, suffix), kind
    assert set(tdn._NUMPY_OF) == {k for k, v in written.items() if v != "not written"}
    assert set(tdn._NUMPY_OF) <= {v for k, v in f.items() if k.startswith("type_name ")}
    assert (f["npy_version"], f["numpy_extension"]) == ("1.0", ".npy")
    assert f["npy_header"] == "{'descr': '<dtype>', 'fortran_order': False, 'shape': ("
    assert f["summary_file"] == tdn.SUMMARY_FILE and f["summary_when"] == 'the format list holds "summary"'
    assert {"tensors", "name", "type", "files", "numpy"} <= set(f["summary_keys"].split())  # what _read_summary reads
    assert f["summary_name"] == "written as it is"  # unescaped: _read_summary parses with strict=False

    long = "/pts_bbox_head/task_heads.0/reg/reg.0/" * 3 + "Conv_output_0"  # 121 characters, 130 with prefix and .npy
    longer = long + "/more/é"  # over 150 bytes: cut from 10.13 on; "é" is two bytes, two "_"
    samples = [(0, "/pts_backbone/blocks.0/Conv_output_0", "HALF"), (12, "a:b,c d", "FLOAT"), (3, long, "BF16"),
               (10000, longer, "FLOAT"), (7, "q", "INT4"), (8, "m", "BOOL")]
    for index, name, kind in samples:
        assert dump_file_name(index, name, kind, truncate=cuts) == _name_from_facts(f, index, name, kind), name

    tensors = [(n, np.arange(6, dtype=np.float32).reshape(2, 3) + i, k) for i, (_, n, k) in enumerate(samples[:4])]
    for summary in (True, False):  # numpy,summary (the kit's scripts now) and numpy alone (older kits)
        folder = tmp_path / str(summary)
        paths = trtexec_writer.write_debug_dumps(folder, tensors, summary=summary, truncate=cuts)
        assert [p.name for p in paths] == [_name_from_facts(f, i, n, k) for i, (n, _, k) in enumerate(tensors)]
        dumps = read_debug_dumps(folder, [n for n, _, _ in tensors])
        assert dumps.resolved_by == (tdn.SUMMARY_FILE if summary else "file names")
        assert set(dumps.files) == {n for n, _, _ in tensors} and not dumps.ambiguous
        assert dumps.dtypes[long] == ("BF16" if summary else "BF16|FP8|FP4")  # the summary names the type exactly


# -- layer information, precisions and what the engine fused away ------------------------------------------------
def _engine_of(model, fp16_layer: int):
    """An engine as TensorRT builds the backbone: each Conv fused with the Relu after it (one layer, named
    "CONV + RELU", writing the Relu's output: the Conv's output is fused away), other nodes one layer each; layer
    `fp16_layer` writes FP16, the rest FP32. Returns (layer dicts for write_layer_info, engine bindings)."""
    nodes = list(model.graph.node)
    consumers = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    layers, done = [], set()
    for n in nodes:
        if n.name in done:
            continue
        group = [n]
        after = consumers.get(n.output[0], [])
        if n.op_type == "Conv" and len(after) == 1 and after[0].op_type == "Relu":
            group.append(after[0])
        done.update(g.name for g in group)
        fmt = "Channel major FP16 format where channel % 8 == 0" if len(layers) == fp16_layer else \
            "Row major linear FP32"
        layers.append({"name": " + ".join(g.name for g in group), "type": "CaskConvolution",
                       "inputs": [(n.input[0], [1, 64, 64, 64], "Row major linear FP32")],
                       "outputs": [(group[-1].output[0], [1, 64, 64, 64], fmt)], "onnx": [g.name for g in group]})
    bindings = [i.name for i in model.graph.input] + [o.name for o in model.graph.output]
    return layers, bindings


def test_layer_info_names_the_precision_trtexec_ran_and_the_tensors_it_fused(backbone, tmp_path):
    model, names = backbone
    layers, bindings = _engine_of(model, fp16_layer=1)
    trtexec_writer.write_layer_info(tmp_path / "layers.json", layers, bindings)
    info = read_layer_info(tmp_path / "layers.json")
    assert info.detailed and len(info.layers) == len(layers) and info.bindings == tuple(bindings)
    second = info.layers[1]
    assert second.onnx_nodes == tuple(layers[1]["onnx"]) and second.precision == "fp16"
    assert info.layer_of_tensor(layers[1]["outputs"][0][0]) is second
    assert info.precision_of_node(layers[0]["onnx"][0]) == "fp32"

    mismatches = precision_mismatches(info, model)
    assert [m.node for m in mismatches] == layers[1]["onnx"]  # the Conv and the Relu fused with it
    mismatch, conv = mismatches[0], layers[1]["onnx"][0]
    assert mismatch.op_type == "Conv" and mismatch.trt_precision == "fp16" and mismatch.onnx_precision == "fp32"
    assert mismatch.message.startswith(f"TensorRT ran {conv} in FP16 although the ONNX keeps it in FP32")

    written = [la["outputs"][0][0] for la in layers]
    dumped = [(t, _values(i), "FLOAT") for i, t in enumerate(written[1:])]  # the first layer's dump was not copied
    trtexec_writer.write_debug_dumps(tmp_path / "dumps", dumped)
    dumps = read_debug_dumps(tmp_path / "dumps", names)
    seen = unobservable(names, dumps, info)
    assert seen.missing == (written[0],)
    fused_convs = [n.output[0] for n in model.graph.node if n.op_type == "Conv" and n.output[0] not in written]
    assert fused_convs and set(seen.fused) == set(fused_convs)
    assert seen.reason(fused_convs[0]) == "fused: not observable in this engine"
    assert "incomplete" in seen.reason(written[0])

    trtexec_writer.write_layer_info(tmp_path / "names.json", layers, bindings, detailed=False)
    names_only = read_layer_info(tmp_path / "names.json")
    assert not names_only.detailed and names_only.layers[1].name_parts == tuple(layers[1]["onnx"])
    with pytest.raises(BadInputError) as err:
        precision_mismatches(names_only, model)
    assert "--profilingVerbosity=detailed" in _one_line(err)
    assert set(unobservable(names, dumps, names_only).undetermined) == set(fused_convs) | {written[0]}

    text = (tmp_path / "layers.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(BadInputError) as err:
        read_layer_info(tmp_path / "cut.json")
    assert "cut.json" in _one_line(err) and "re-copy" in str(err.value)


# -- trtexec --exportOutput ----------------------------------------------------------------------------------------
def test_export_output_is_read_as_trtexec_prints_it(tmp_path):
    heat = np.random.RandomState(0).randn(1, 2, 3, 4).astype(np.float32)
    heat[0, 0, 0, :2] = [np.inf, np.nan]
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    trtexec_writer.write_export_output(tmp_path / "out.json", [("heatmap", heat), ("ids", ids)])
    out = read_trtexec_outputs(tmp_path / "out.json")
    assert out["heatmap"].shape == (1, 2, 3, 4) and out["heatmap"].dtype == np.float32
    np.testing.assert_allclose(out["heatmap"], heat, rtol=1e-5)  # six significant digits, inf and nan kept
    np.testing.assert_array_equal(out["ids"], ids)
    text = (tmp_path / "out.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(BadInputError) as err:
        read_trtexec_outputs(tmp_path / "cut.json")
    assert "--exportOutput" in _one_line(err)

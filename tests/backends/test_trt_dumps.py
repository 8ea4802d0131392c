"""The readers of what TensorRT's tools write on the target (cp_debug/backends/trt_dumps.py), on files written as
their producers write them: polygraphy's RunResults by the polygraphy CLI itself (ONNX Runtime in TensorRT's
place: the same RunResults format), trtexec's files by `trtexec_writer.py`, which follows TensorRT's own
sources line by line (see its docstring)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from cp_debug.backends import trt_dumps
from cp_debug.errors import BadInputError


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

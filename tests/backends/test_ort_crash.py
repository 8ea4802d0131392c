"""A session ONNX Runtime dies making, said instead of dying with it (`backends/ort/ort_crash.py`).

BeatNet's FP16 file (onnxconverter-common's, tried as a new user): ONNX Runtime 1.32's CPU optimiser ends the process
with a segmentation fault at its default level on a float16 `Transpose` (perm 1, 0, 2) into a `MatMul` with a
constant weight. With `CPDEBUG_ORT_CPU_HALF=native` (ONNX Runtime's own float16 kernels) cp_debug died with it: exit
139, no message. Now exit 3, the level that loads it said. By default (float16 storage emulated) the file was judged
"within precision", exit 0, though its deployment dies: now diverged, exit 1, in the same words (issue 115).
Skipped where this ONNX Runtime makes the session."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug


def _model(path) -> None:
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("Transpose", ["x"], ["t"], name="tr", perm=[1, 0, 2]),
                               helper.make_node("MatMul", ["t", "w"], ["y"], name="mm")], "tm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 3])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_session_onnx_runtime_dies_making_is_said(tmp_path):
    from onnxconverter_common import float16

    _model(tmp_path / "fp32.onnx")
    (tmp_path / "fp16").mkdir()
    onnx.save(float16.convert_float_to_float16(onnx.load(tmp_path / "fp32.onnx"), keep_io_types=True),
              tmp_path / "fp16" / "model.onnx")
    plain = subprocess.run([sys.executable, "-c", "import sys, onnxruntime as ort; ort.InferenceSession(sys.argv[1], "
                            "providers=['CPUExecutionProvider'])", str(tmp_path / "fp16" / "model.onnx")],
                           capture_output=True)
    if plain.returncode >= 0:
        pytest.skip("this ONNX Runtime makes the session (the crash seen with 1.32 is fixed)")
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(1).standard_normal((5, 1, 8)).astype(np.float32))
    proc = cpdebug("bisect", "--onnx", tmp_path / "fp32.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{tmp_path / 'fp16'}", "--quiet", env={"CPDEBUG_ORT_CPU_HALF": "native"})
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    said = " ".join((proc.stdout + proc.stderr).split())
    assert "dies (signal" in said and "at graph_optimization_level ORT_ENABLE_ALL" in said, said
    assert "it loads at ORT_ENABLE_EXTENDED" in said, said
    # the default (float16 storage emulated in a float32 graph) runs it, and says that its deployment dies
    proc = cpdebug("bisect", "--onnx", tmp_path / "fp32.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{tmp_path / 'fp16'}", "--quiet", "--json", tmp_path / "r.json")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["outcomes"] == {f"ort@{tmp_path / 'fp16'}": "diverged"}, report["outcome_reasons"]
    reason = report["outcome_reasons"][f"ort@{tmp_path / 'fp16'}"]
    for said in (reason, " ".join(report["warnings"])):
        assert "runtime fault: model.onnx: ONNX Runtime" in said and "dies (signal" in said, said
        assert "at graph_optimization_level ORT_ENABLE_ALL" in said and "it loads at ORT_ENABLE_EXTENDED" in said
    assert "float16 storage emulated in a float32 graph): within precision" in reason


def test_a_healthy_float16_file_pays_one_child_and_is_judged(tmp_path):
    """The default mode's check of a user's float16 file (`ort_crash.file_crash`): one child a file (about 0.2 s on
    a small one), kept per file (path, size, mtime); a file ONNX Runtime makes a session of is judged as before."""
    from onnxconverter_common import float16

    from cp_debug.backends.ort import ort_crash

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "m",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 3])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "fp32.onnx")
    (tmp_path / "fp16").mkdir()
    path = tmp_path / "fp16" / "model.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(tmp_path / "fp32.onnx"), keep_io_types=True), path)
    assert ort_crash.file_crash(path) is None
    kept = [k for k in ort_crash._FILES if k[0] == str(path.resolve())]
    assert len(kept) == 1 and ort_crash.file_crash(path) is None  # asked again: the kept answer, no child
    assert [k for k in ort_crash._FILES if k[0] == str(path.resolve())] == kept
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32))
    proc = cpdebug("bisect", "--onnx", tmp_path / "fp32.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{tmp_path / 'fp16'}", "--quiet", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert not any("runtime fault" in w for w in report["warnings"]), report["warnings"]


def test_a_float16_file_given_as_onnx_that_onnx_runtime_dies_making_is_said(tmp_path):
    """The same file given as `--onnx` (the reference's side, and the file an ONNX Runtime CPU candidate runs as its
    own: a float16 file converts to itself): before, `-b ort,ort-cpu-fp16` read "within precision", exit 0, the
    deployment dying unsaid. Now the candidate is diverged in the same words and the reference's side is warned once."""
    from onnxconverter_common import float16

    _model(tmp_path / "fp32.onnx")
    path = tmp_path / "fp16.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(tmp_path / "fp32.onnx"), keep_io_types=True), path)
    plain = subprocess.run([sys.executable, "-c", "import sys, onnxruntime as ort; ort.InferenceSession(sys.argv[1], "
                            "providers=['CPUExecutionProvider'])", str(path)], capture_output=True)
    if plain.returncode >= 0:
        pytest.skip("this ONNX Runtime makes the session (the crash seen with 1.32 is fixed)")
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(1).standard_normal((5, 1, 8)).astype(np.float32))
    proc = cpdebug("bisect", "--onnx", path, "--inputs", tmp_path / "x.npz", "-b", "ort,ort-cpu-fp16", "--quiet",
                   "--json", tmp_path / "r.json")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["outcomes"] == {"ort-cpu-fp16": "diverged"}, report["outcome_reasons"]
    reason = report["outcome_reasons"]["ort-cpu-fp16"]
    assert reason.startswith("runtime fault: fp16.onnx: ONNX Runtime") and "it loads at ORT_ENABLE_EXTENDED" in reason
    [warned] = [w for w in report["warnings"] if "runtime fault" in w]  # once, on the reference's side
    assert warned.startswith("ort (the reference): runtime fault: fp16.onnx:") and "dies (signal" in warned, warned

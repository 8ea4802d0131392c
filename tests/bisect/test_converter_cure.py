"""The cure of onnxconverter-common's refused float16 file is complete, and run before it is said (issue 115, the
thirteenth stop's "one step of two"): on a graph written as paddle2onnx writes SLANet-plus (`converter_files`), the
file the converter writes is refused for a Cast(to=float) inside the Loop's body; with every Cast in
`node_block_list` it is refused again at the Resize, whose empty `scales` Constant the converter hides behind its
Cast. The line names both, cp_debug ran it, and the advice followed by hand (this test's own code) gives a file ONNX
Runtime loads and runs within float16's rounding of the FP32 graph."""

from __future__ import annotations

import ast
import re

import numpy as np
import onnx
import onnxruntime

from tests.bisect.converter_files import converted, paddle_style
from tests.cli_run import cpdebug


def _line(proc) -> str:
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_the_converters_cure_is_complete_and_verified_by_running_it(tmp_path):
    model = paddle_style()
    onnx.save(model, tmp_path / "fp32.onnx")
    (tmp_path / "d").mkdir()
    onnx.save(converted(model), tmp_path / "d" / "model.onnx")  # as the user wrote it: refused
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)

    line = _line(cpdebug("bisect", "--onnx", tmp_path / "fp32.onnx", "--inputs", tmp_path / "x.npz", "-b",
                         f"ort,ort@{tmp_path / 'd'}", "--quiet"))
    assert "Cast.1" in line.split("cannot load this file: ")[1].split(" — ")[0]  # ORT names the body's Cast
    blocked = ast.literal_eval(line.split("node_block_list=")[1].split("]")[0] + "]")
    assert sorted(blocked) == ["Cast.0", "Cast.1"], line  # the graph's and the body's
    constants = re.search(r"read Constant ((?:'[^']*'(?:, )?)+) through", line).group(1)
    constants = ast.literal_eval(f"[{constants}]")
    assert sorted(constants) == ["roi", "scales"], line  # the Resize's, hidden behind the converter's Cast
    assert "'Resize.0'" in line and "initializers of the same name" in line, line
    assert "(run here: onnxconverter-common " in line and f"loads in ONNX Runtime {onnxruntime.__version__})" in line

    # the advice followed as said: the file loads, and runs within float16's rounding
    ref = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    half = onnxruntime.InferenceSession(converted(model, blocked, constants).SerializeToString(),
                                        providers=["CPUExecutionProvider"])
    want, got = ref.run(None, {"x": x})[0], half.run(None, {"x": x})[0]
    assert np.allclose(got, want, rtol=1e-2, atol=1e-2) and not np.array_equal(got, want)
    # one step of the two is not the cure (why the line says both)
    for partial in ((blocked, ()), ((), constants)):
        try:
            onnxruntime.InferenceSession(converted(model, *partial).SerializeToString(),
                                         providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ONNX Runtime's refusal is the point
            assert "Resize.0" in str(err) or "Cast.1" in str(err), err
        else:
            raise AssertionError(f"{partial} alone loads")


def test_without_the_fp32_graph_the_cure_is_said_as_not_run(tmp_path):
    (tmp_path / "d").mkdir()
    onnx.save(converted(paddle_style()), tmp_path / "d" / "model.onnx")
    np.savez(tmp_path / "x.npz", x=np.ones((1, 2, 4, 4), np.float32))
    line = _line(cpdebug("bisect", "--onnx", tmp_path / "d" / "model.onnx", "--inputs", tmp_path / "x.npz", "-b",
                         "ort,ort-cpu-fp16", "--quiet"))
    assert "node_block_list=['Cast.0', 'Cast.1']" in line or "node_block_list=['Cast.1', 'Cast.0']" in line, line
    assert "(not run here: no FP32 graph was given beside the file" in line, line


def test_a_file_converted_without_keep_io_types_is_cured_as_it_was_converted(tmp_path):
    """The advice keeps the user's own edges: a file whose graph input and output the converter made float16
    (keep_io_types=False) is cured with keep_io_types=False, and that is what cp_debug ran (was always True)."""
    model = paddle_style()
    onnx.save(model, tmp_path / "fp32.onnx")
    (tmp_path / "d").mkdir()
    half = converted(model, keep_io_types=False)
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    onnx.save(half, tmp_path / "d" / "model.onnx")
    np.savez(tmp_path / "x.npz", x=np.ones((1, 2, 4, 4), np.float32))
    line = _line(cpdebug("bisect", "--onnx", tmp_path / "fp32.onnx", "--inputs", tmp_path / "x.npz", "-b",
                         f"ort,ort@{tmp_path / 'd'}", "--quiet"))
    assert "convert_float_to_float16(model, keep_io_types=False, node_block_list=" in line, line
    assert f"loads in ONNX Runtime {onnxruntime.__version__})" in line, line
    blocked = ast.literal_eval(line.split("node_block_list=")[1].split("]")[0] + "]")
    cured = converted(model, blocked, ("roi", "scales"), keep_io_types=False)
    assert cured.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16  # the user's edges kept
    onnxruntime.InferenceSession(cured.SerializeToString(), providers=["CPUExecutionProvider"])

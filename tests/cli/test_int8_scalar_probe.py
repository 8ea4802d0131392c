"""An INT8 file whose graph holds 0-d tensors (`DynamicQuantizeLinear`'s scale and zero point, what
`onnxruntime.quantization.quantize_dynamic` writes before every MatMulInteger) given as `--onnx` with an FP16 or an
INT8 candidate (issue 117): every probe compared, plotted and judged, a 0-d one too, never exit 70 (`TypeError:
return arrays must be of ArrayType` in the error histogram of a scalar)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug


def _dynamic_int8(folder):
    """x (1x16) -> DynamicQuantizeLinear -> MatMulInteger with a uint8 weight -> Cast -> Mul by the 0-d scales -> Relu;
    the file and its inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(0, 255, (16, 8)).astype(np.uint8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "x_scale", "x_zp"], name="dql"),
        helper.make_node("MatMulInteger", ["xq", "w", "x_zp", "w_zp"], ["acc"], name="mmi"),
        helper.make_node("Cast", ["acc"], ["acc_f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["x_scale", "w_scale"], ["scale"], name="scale_mul"),
        helper.make_node("Mul", ["acc_f", "scale"], ["y"], name="deq"),
        helper.make_node("Relu", ["y"], ["out"], name="relu"),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(128, np.uint8), "w_zp"),
             numpy_helper.from_array(np.array(0.01, np.float32), "w_scale")]
    graph = helper.make_graph(nodes, "dyn_int8", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, folder / "int8.onnx")
    np.savez(folder / "inputs.npz", x=rng.standard_normal((1, 16)).astype(np.float32))
    return folder / "int8.onnx", folder / "inputs.npz"


@pytest.mark.parametrize("candidate", ["ort-cpu-fp16", "ort-cpu-int8"])
def test_int8_file_with_scalar_probes_bisects(tmp_path, candidate):
    onnx_path, inputs = _dynamic_int8(tmp_path)
    res = cpdebug("bisect", "--onnx", onnx_path, "--inputs", inputs, "-b", f"ort,{candidate}",
                  "--json", "r.json", cwd=tmp_path)
    assert res.returncode in (0, 1), res.stdout + res.stderr
    assert "internal error" not in res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    rows = {r["probe"]: r for r in report["results"][candidate]}
    assert "x_scale" in rows and "out" in rows, sorted(rows)  # the 0-d probe compared like the others

"""A graph whose tail computes in float64 (issue 115, item 4: no refusal of what runs). swift-f0's pitch decoder
(its wheel's `model.onnx`) casts its logits to double before a Softmax over the bins and an expectation over their
log-frequencies; the runners give every float as float32, so the lockstep's cut at the Softmax declared a float
input beside the double output its inference gave it: "ONNX Runtime cannot load the model", exit 2, on a file plain
ONNX Runtime runs. Built here small with swift-f0's tail (a Cast to double, Softmax, Mul by float64 bins, ReduceSum,
Exp)."""

from __future__ import annotations

import json

import numpy as np
from tests.cli_run import cpdebug


def double_tail_model(seed: int = 0):
    """x [1, n, 16] → MatMul → Relu → MatMul → Cast(double) → Softmax → · bins (float64) → ReduceSum → Exp."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"], name="fc1"), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("MatMul", ["b", "w2"], ["logits"], name="fc2"),
             helper.make_node("Cast", ["logits"], ["wide"], to=TensorProto.DOUBLE, name="to_double"),
             helper.make_node("Softmax", ["wide"], ["p"], axis=-1, name="softmax"),
             helper.make_node("Mul", ["p", "bins"], ["pb"], name="weigh"),
             helper.make_node("ReduceSum", ["pb", "axis"], ["log_f"], name="expect"),
             helper.make_node("Exp", ["log_f"], ["pitch"], name="hz")]
    inits = [numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((32, 24)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array(np.linspace(np.log(46.875), np.log(2093.75), 24), "bins"),
             numpy_helper.from_array(np.array([-1], np.int64), "axis")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n", 16])
    pitch = helper.make_tensor_value_info("pitch", TensorProto.DOUBLE, [1, "n", 1])
    graph = helper.make_graph(nodes, "double_tail", [x], [pitch], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def test_a_float64_tail_is_cut_and_judged(tmp_path):
    import onnx
    import onnxruntime as ort

    model = double_tail_model()
    onnx.save(model, tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((1, 20, 16)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    plain = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert plain.dtype == np.float64 and np.isfinite(plain).all()  # plain ONNX Runtime runs the file
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   "ort-cpu,ort-cpu-fp16", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]  # was exit 2: the cut at the Softmax
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["outcomes"]["ort-cpu-fp16"] == "within_precision"
    # every layer of the float64 tail was probed and compared, not skipped
    assert {"p", "pb", "log_f", "pitch"} <= {p["name"] for p in rep["probes"]}

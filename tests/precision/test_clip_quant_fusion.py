"""ONNX Runtime's ClipQuantFusion drops a Clip in front of a QuantizeLinear whose int8 range meets the Clip's bounds
within float32's epsilon, compared absolutely (issue 84: a random-init MobileNetV2's ReLU6 at ±1.9e-8 lost its
negatives): `precision.int8.clips_ort_drops` names such Clips, and a real ONNX Runtime session shows the rule."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from cp_debug.precision.int8 import clips_ort_drops


def _graph(scale: float) -> onnx.ModelProto:
    """x → QuantizeLinear → DequantizeLinear → Clip(0, 6) → QuantizeLinear(int8, symmetric) → DequantizeLinear → y: the
    Clip between Q/DQ pairs as in a QDQ model (ORT's rule leaves a Clip on a graph input alone)."""
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
             numpy_helper.from_array(np.array(scale, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="xq"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="xd"),
             helper.make_node("Clip", ["xd", "lo", "hi"], ["c"], name="relu6"),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    m.ir_version = 8
    return m


def _run(model: onnx.ModelProto, level, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_a_clip_within_epsilon_of_the_int8_range_is_named_and_ort_drops_it():
    tiny = _graph(1.5e-10)  # int8 range ±1.9e-8: within 1.19e-7 of the Clip's 0
    assert list(clips_ort_drops(tiny)) == ["relu6"]
    assert clips_ort_drops(tiny)["relu6"] < 0
    x = np.linspace(-1.5e-8, 1.5e-8, 8, dtype=np.float32)
    off = _run(tiny, ort.GraphOptimizationLevel.ORT_DISABLE_ALL, x)
    on = _run(tiny, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, x)
    assert (off >= 0).all()  # as written: the Clip holds
    assert (on < 0).sum() >= 3  # ORT's optimiser removed it: the negatives pass


def test_a_clip_the_int8_range_is_far_from_is_kept_and_not_named():
    wide = _graph(6.0 / 127)
    assert clips_ort_drops(wide) == {}
    x = np.linspace(-3, 3, 8, dtype=np.float32)
    assert (_run(wide, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, x) >= 0).all()

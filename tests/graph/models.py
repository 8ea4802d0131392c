"""Small ONNX graphs written with onnx.helper, for the graph floor's tests and the lockstep tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper


def residual_model() -> onnx.ModelProto:
    """x -> conv a -> relu b -> conv c -> add(c, a) = y: `a` is read again two segments later."""
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [4, 4, 3, 3], rng.normal(size=144).astype(np.float32) * 0.3)
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [4, 4, 3, 3], rng.normal(size=144).astype(np.float32) * 0.3)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv_a"),
        helper.make_node("Relu", ["a"], ["b"], name="relu_b"),
        helper.make_node("Constant", [], ["k"], value=helper.make_tensor("k", TensorProto.FLOAT, [], [2.0])),
        helper.make_node("Conv", ["b", "w2"], ["c0"], pads=[1, 1, 1, 1], name="conv_c"),
        helper.make_node("Mul", ["c0", "k"], ["c"], name="scale_c"),
        helper.make_node("Add", ["c", "a"], ["y"], name="add_y"),
    ]
    g = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m

"""The exporter's deduplicated weights (`Identity(bias_a)` standing for `bias_b`) become initializers again."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from cp_debug.graph.model import fold_initializer_identities
from cp_debug.graph.session import run_ort


def _model():
    w = numpy_helper.from_array(np.full((2, 2, 1, 1), 0.5, np.float32), "w")
    b = numpy_helper.from_array(np.array([0.25, -1.0], np.float32), "bias_a")
    nodes = [helper.make_node("Identity", ["bias_a"], ["bias_b"], name="dedup"),
             helper.make_node("Conv", ["x", "w", "bias_a"], ["h"], name="c0"),
             helper.make_node("Conv", ["h", "w", "bias_b"], ["y"], name="c1")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_identity_of_an_initializer_is_folded_keeping_names_and_values():
    m = _model()
    folded = fold_initializer_identities(m)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Conv"]
    inits = {i.name: numpy_helper.to_array(i) for i in folded.graph.initializer}
    np.testing.assert_array_equal(inits["bias_b"], inits["bias_a"])
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(run_ort(folded, {"x": x})["y"], run_ort(m, {"x": x})["y"])
    assert fold_initializer_identities(folded) is folded  # nothing left to fold: the model itself

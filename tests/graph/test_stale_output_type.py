"""A graph output's declared type wins over a stale value_info of the same name (`graph.model.import_typed`), as
ONNX Runtime reads the file: onnxconverter-common's float16 with keep_io_types leaves value_info '387' float16 on
ddddocr's float32 output; with a probe exposed the output came out typed float16 and ONNX Runtime refused the user's
valid file ("Type (tensor(float16)) of output arg (387) … does not match expected type (tensor(float))", exit 2)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from cp_debug.graph.model import expose_outputs


def _model():
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["h"], name="relu"),
                           helper.make_node("Cast", ["h"], ["h16"], to=TensorProto.FLOAT16, name="down"),
                           helper.make_node("Cast", ["h16"], ["y"], to=TensorProto.FLOAT, name="up")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                          value_info=[helper.make_tensor_value_info("y", TensorProto.FLOAT16, [4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_a_probe_exposed_keeps_the_outputs_declared_type():
    m = _model()
    x = {"x": np.array([-1, 0.5, 2, -3], np.float32)}
    plain = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    exposed = expose_outputs(m, ["h"])
    assert [o.type.tensor_type.elem_type for o in exposed.graph.output][0] == TensorProto.FLOAT
    y, h = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y", "h"], x)
    np.testing.assert_array_equal(y, plain)
    np.testing.assert_array_equal(h, [0, 0.5, 2, 0])

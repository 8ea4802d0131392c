"""Tiny real ONNX models for the bundle and shrink tests, and two precision transforms."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SHAPE = [4, 8]


def chain(ops, dtype=TensorProto.FLOAT) -> onnx.ModelProto:
    """x → op0 → op1 → … → y, each op ("Mul"/"Add", constant) or ("Relu", None); nodes named n0, n1, …"""
    npdt = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    nodes, inits, prev = [], [], "x"
    for i, (op, c) in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        if c is None:
            nodes.append(helper.make_node(op, [prev], [out], name=f"n{i}"))
        else:
            inits.append(numpy_helper.from_array(np.array(c, npdt), f"c{i}"))
            nodes.append(helper.make_node(op, [prev, f"c{i}"], [out], name=f"n{i}"))
        prev = out
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", dtype, SHAPE)],
                          [helper.make_tensor_value_info("y", dtype, SHAPE)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Real FP16: initializers and graph I/O in float16."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    for init in m.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    return m


def fp16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 storage emulated with Cast→float16→Cast→float32 after every node (ONNX Runtime's CPU provider would
    otherwise compute a float16 chain in float32 through its inserted casts, hiding the overflow)."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    new = []
    for node in m.graph.node:
        outs = list(node.output)
        for k, o in enumerate(outs):
            node.output[k] = f"{o}__pre16"
        new.append(node)
        for o in outs:
            new.append(helper.make_node("Cast", [f"{o}__pre16"], [f"{o}__16"], to=TensorProto.FLOAT16))
            new.append(helper.make_node("Cast", [f"{o}__16"], [o], to=TensorProto.FLOAT))
    del m.graph.node[:]
    m.graph.node.extend(new)
    return m


def run(model: onnx.ModelProto, feed: dict) -> dict:
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feed)))

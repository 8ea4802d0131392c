"""A tensor replaced by the reference's value in the graph a candidate runs (`restore.run_restored`'s REPLACE): its
readers read a new graph input fed that value. The input is typed from the graph where inference types the tensor
with a shape, else from the value itself (a QOperator file's integer-only tensor, read through the DequantizeLinear
view cp_debug adds, has no shape in the file: the checker refused an input without one, and the whole intervention
was dropped — facenet-pytorch's RNet as a QOperator file, `dense5_1`'s output). Where the tensor is such a view, the
integer ops reading what it dequantizes read the reference's value quantized at the file's own scale, so that the
replacement reaches them (else it replaced a tensor no node reads)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

REF_INPUT = "{}__cpdebug_reference"


def with_reference_inputs(model: "onnx.ModelProto", values: dict[str, np.ndarray]
                          ) -> tuple["onnx.ModelProto", dict[str, np.ndarray]]:
    """`model` with every reader of each tensor of `values` reading a new input (`REF_INPUT`) instead (a graph output
    among them: the output itself that input's), and the feed of those inputs, each value in its input's type."""
    import onnx
    from onnx import helper

    from cp_debug.graph.plan import tensor_types

    m = onnx.ModelProto()
    m.CopyFrom(model)
    types = tensor_types(m)
    fed = {}
    for t, value in values.items():
        name = REF_INPUT.format(t)
        writer = next((n for n in m.graph.node if t in n.output), None)
        for node in m.graph.node:
            node.input[:] = [name if x == t else x for x in node.input]
        if writer is not None and writer.op_type == "DequantizeLinear":
            _integer_readers(m, writer, name, helper)
        if t in {o.name for o in m.graph.output}:  # a graph output (a plain export's logits: lm_head's product) is
            # the reference's too: its producer writes a tensor of its own, an Identity the output from the input
            for node in m.graph.node:
                node.output[:] = [x + "::deployed" if x == t else x for x in node.output]
            m.graph.node.append(helper.make_node("Identity", [name], [t], name=t + "::reference"))
        known = types.get(t)
        half = known.tensor_type.elem_type == onnx.TensorProto.FLOAT16 if known is not None else (
            np.asarray(value).dtype == np.float16)
        if known is not None and known.tensor_type.HasField("shape"):
            vi = onnx.ValueInfoProto(name=name)
            vi.type.CopyFrom(known)
        else:  # no shape the graph knows: the value's own
            vi = helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT16 if half else onnx.TensorProto.FLOAT,
                                               list(np.shape(value)))
        m.graph.input.append(vi)
        fed[name] = np.asarray(value).astype(np.float16 if half else np.float32)
    return m, fed


def _integer_readers(m, dq, name: str, helper) -> None:
    """The nodes other than DequantizeLinear that read `dq`'s integer input (a QOperator file's QLinear* after the
    view `dq` is) read `name` quantized at `dq`'s scale and zero point instead."""
    readers = [n for n in m.graph.node if n is not dq and n.op_type != "DequantizeLinear" and dq.input[0] in n.input]
    if not readers:
        return
    q = helper.make_node("QuantizeLinear", [name, *dq.input[1:]], [f"{name}::quantized"], name=f"{name}::quantized")
    for n in readers:
        n.input[:] = [q.output[0] if x == dq.input[0] else x for x in n.input]
    nodes = list(m.graph.node)
    at = min(nodes.index(n) for n in readers)
    del m.graph.node[:]
    m.graph.node.extend([*nodes[:at], q, *nodes[at:]])

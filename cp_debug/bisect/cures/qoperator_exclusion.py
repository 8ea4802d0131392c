"""A user's QOperator INT8 file (`quantize_static(..., quant_format=QuantFormat.QOperator)`: QLinearConv, QGemm,
QLinearMatMul, QLinearSoftmax, … between QuantizeLinear and DequantizeLinear) with a node left out of its
quantization, as the quantizer's `nodes_to_exclude` leaves it: the integer op written back as the float op of the
FP32 graph (its attributes, its float weight and bias) reading its input dequantized at the file's scale, its output
quantized again at the file's scale for the integer ops after it (`qdq_removal.without_qdq` then removes the pairs
around it as for a Q/DQ file). A probe of such a file is restored so, by the node the reference names (the cure:
`nodes_to_exclude` with the FP32 graph's node name), not only by its tensor replaced by the reference's — which
restores everything before it (facenet-pytorch's RNet as a QOperator file: `dense4`'s tensor replaced brings the
face back, leaving `dense4` out does not; leaving `conv1` or `conv2` out does)."""

from __future__ import annotations

from cp_debug.probes.quantized_forms import _QLINEAR

SUFFIX = "_quantized"  # ONNX Runtime's quantizer: the integer twin of a float tensor


def reference_node(node, reference):
    """The FP32 graph's node the QOperator `node` stands for: the one writing its output's float name (ONNX Runtime's
    `X_quantized`), else named as it is less `_quant`, of the op it replaces; None where none is."""
    if node.op_type not in _QLINEAR or reference is None:
        return None
    op = _QLINEAR[node.op_type][0]
    out = node.output[0][: -len(SUFFIX)] if node.output[0].endswith(SUFFIX) else None
    by_out = next((n for n in reference.graph.node if n.op_type == op and out is not None and out in n.output), None)
    name = node.name[: -len("_quant")] if node.name.endswith("_quant") else None
    return by_out or next((n for n in reference.graph.node if n.op_type == op and n.name and n.name == name), None)


def qoperator_writer(model, reference, writer):
    """The FP32 graph's node name that leaves the QOperator `writer` out (`reference_node`), where each of its float
    op's inputs past the first is a constant of the FP32 graph; None where `writer` is no QOperator op or none is."""
    from cp_debug.graph.model import constant_tensors

    ref = reference_node(writer, reference)
    if ref is None or not ref.name:
        return None
    inits = constant_tensors(reference.graph)
    return ref.name if all(x in inits for x in ref.input[1:] if x) else None


def with_float_ops(model, nodes, reference):
    """`model` with each QOperator node whose FP32 node (`reference_node`) is named in `nodes` written as that float
    node: DequantizeLinear of its first input at the file's scale → the FP32 node (its name, attributes and
    constants) → QuantizeLinear at the file's output scale into the node's integer output. `model` itself where none
    is."""
    import onnx
    from onnx import helper

    from cp_debug.graph.model import constant_tensors

    if reference is None or not any(n.op_type in _QLINEAR for n in model.graph.node):
        return model
    inits = constant_tensors(reference.graph)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    made, kept, names = [], [], set(nodes)
    for node in out.graph.node:
        ref = reference_node(node, reference)
        if ref is None or ref.name not in names or not all(x in inits for x in ref.input[1:] if x):
            kept.append(node)
            continue
        _, _, (ys, yz) = _QLINEAR[node.op_type]
        x = f"{node.output[0]}::float_in"
        y = f"{node.output[0]}::float_out"
        consts = []
        for k, name in enumerate(ref.input[1:], 1):
            if name:
                c = onnx.TensorProto()
                c.CopyFrom(inits[name])
                c.name = f"{ref.name}::{k}"
                consts.append(c)
        out.graph.initializer.extend(consts)
        float_inputs = [x, *[f"{ref.name}::{k}" if n else "" for k, n in enumerate(ref.input[1:], 1)]]
        dq = helper.make_node("DequantizeLinear", list(node.input[:3]), [x], name=f"{ref.name}::dequantized")
        op = helper.make_node(ref.op_type, float_inputs, [y], name=ref.name)
        op.attribute.extend(ref.attribute)
        q = helper.make_node("QuantizeLinear", [y, node.input[ys], node.input[yz]], [node.output[0]],
                             name=f"{ref.name}::quantized")
        kept.extend([dq, op, q])
        made.append(ref.name)
    if not made:
        return model
    del out.graph.node[:]
    out.graph.node.extend(kept)
    return out

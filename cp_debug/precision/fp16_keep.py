"""Which nodes of an FP16 conversion (`precision.fp16`) stay in FP32, and which graphs it refuses: the ops and input
slots ONNX defines for float32 only, the float arithmetic that only feeds them (walking backwards), and the user's
keep-FP32 names and op types, checked against the graph."""

from __future__ import annotations

from cp_debug.errors import BadInputError

# Ops whose float inputs ONNX allows as float32 only (no float16 type in the op schema), or whose float input is
# an int8 scale (Q/DQ before opset 19), and ONNX Runtime's quantized contrib ops (com.microsoft: float32 only, as
# `quantize_dynamic` writes an LSTM: ddddocr's captcha reader ships one). Kept in FP32 whole.
FP32_ONLY_OPS = frozenset({
    "Range", "NonMaxSuppression", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm", "QAttention",
    "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax", "QLinearConcat",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearWhere", "QEmbedLayerNormalization",
})
# Input slots that must be float32 whatever the node computes in: (op type → slot indices).
FP32_ONLY_SLOTS: dict[str, tuple[int, ...]] = {
    "Resize": (2,),  # scales: tensor(float) only
    "Upsample": (1,),  # scales: tensor(float) only
}
# Input slots that take any dtype: no Cast is inserted in front of them.
ANY_DTYPE_SLOTS: dict[str, tuple[int, ...]] = {
    "Cast": (0,), "CastLike": (0,), "Shape": (0,), "Size": (0,),
}
# Integer ops whose int32 output is an accumulator, dequantized by a Cast and a Mul (`_dequantized_accumulators`).
_INT_ACCUMULATORS = frozenset({"ConvInteger", "MatMulInteger"})
# Ops with control-flow subgraphs: kept in FP32 whole, their bodies as they are (`outer_reads`).
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


def check_convertible(graph, keep_nodes: set[str]) -> None:
    """BadInputError for keep-FP32 names that are not nodes of `graph`."""
    node_names = {n.name for n in graph.nodes}
    unknown = sorted(keep_nodes - node_names)
    if unknown:
        some = ", ".join(repr(n) for n in list(node_names)[:5])
        raise BadInputError(f"keep-FP32 node(s) {', '.join(map(repr, unknown[:5]))} not in the graph; "
                            f"node names look like {some}")


def fp32_nodes(graph, keep_nodes: set[str], keep_ops: set[str]) -> tuple[set[int], set[int]]:
    """The ids of the nodes that compute in FP32: (the user's nodes and op types, the rest). The rest are FP32-only
    ops, the Cast and Mul dequantizing an integer op's accumulator, and (walking backwards) every node whose float
    outputs feed only FP32-only slots, FP32 nodes or Casts to an integer type."""
    import numpy as np

    f32 = np.dtype(np.float32)
    consumers = _consumer_map(graph)
    user_kept = {id(n) for n in graph.nodes if n.name in keep_nodes or n.op in keep_ops}
    auto_kept = _dequantized_accumulators(graph, consumers) - user_kept
    for node in reversed(graph.nodes):
        if id(node) in user_kept or id(node) in auto_kept:
            continue
        if node.op in FP32_ONLY_OPS or node.op == "Constant":  # Constant nodes left by step 1 stay as they are
            auto_kept.add(id(node))
        elif _feeds_only_fp32(node, consumers, auto_kept, f32):
            auto_kept.add(id(node))
    # If / Loop / Scan kept whole (their bodies as they are), after the walk: what feeds them is no shape arithmetic
    # (a table decoder's Loop reads the whole backbone's features, which the walk would keep in FP32 with it)
    auto_kept |= {id(n) for n in graph.nodes if n.op in _CONTROL_FLOW} - user_kept
    return user_kept, auto_kept


def outer_reads(graph) -> list[tuple]:
    """Where `graph`'s control-flow bodies read an outer-scope tensor by name, not as an input (an If's branches,
    a Loop's body read the outer graph's tensors, as onnx-graphsurgeon's own objects): (the body's node, its input
    slot, the tensor), nested bodies included. A body stays float32: an outer tensor made float16 is cast back
    there (`_Fp16Conversion.cast_outer_reads`)."""
    import onnx_graphsurgeon as gs

    outer = {id(t) for t in graph.inputs} | {id(t) for n in graph.nodes for t in [*n.inputs, *n.outputs]}

    def inside(node) -> list:
        found = []
        for value in node.attrs.values():
            for body in (value if isinstance(value, list) else [value]):
                if isinstance(body, gs.Graph):
                    for n in body.nodes:
                        found += [(n, slot, t) for slot, t in enumerate(n.inputs) if t is not None and id(t) in outer]
                        found += inside(n)
        return found

    return [read for n in graph.nodes if n.op in _CONTROL_FLOW for read in inside(n)]


def dequantizing_nodes(model) -> list[str]:
    """The names of `model`'s nodes `_dequantized_accumulators` keeps in FP32, found on the whole graph: a lockstep
    segment converted alone holds a Cast or Mul whose accumulator is another segment's, so it is told them by name
    (and their outputs cross a cut unrounded)."""
    if not any(n.op_type in _INT_ACCUMULATORS for n in model.graph.node):
        return []
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    kept = _dequantized_accumulators(graph, _consumer_map(graph))
    return [n.name for n in graph.nodes if id(n) in kept and n.name]


def _dequantized_accumulators(graph, consumers: dict[int, list]) -> set[int]:
    """The Cast of an integer op's int32 accumulator to float and the Mul by its scale after it (ORT's
    `quantize_dynamic` writes ConvInteger → Add(int32 bias) → Cast → Mul(input scale × weight scale)): the
    accumulator passes 65504 (ddddocr's captcha reader: 6.7e4) and the scale product lies near or below float16's
    smallest subnormal (6.6e-8, 1.3e-9), so in float16 its output is inf or 0. The scale's own arithmetic follows
    them into FP32 by the backward walk."""
    producer = {id(t): n for n in graph.nodes for t in n.outputs}

    def accumulated(t, depth: int = 0) -> bool:
        n = producer.get(id(t))
        if n is None or depth > 4:
            return False
        return n.op in _INT_ACCUMULATORS or (n.op in ("Add", "Sub", "Mul", "Reshape", "Identity") and any(
            accumulated(i, depth + 1) for i in n.inputs if i is not None))

    kept: set[int] = set()
    for node in graph.nodes:
        if node.op == "Cast" and node.inputs and node.outputs and accumulated(node.inputs[0]):
            kept.add(id(node))
            kept.update(id(c) for c, _ in consumers.get(id(node.outputs[0]), ()) if c.op == "Mul")
    return kept


def _feeds_only_fp32(node, consumers: dict[int, list], auto_kept: set[int], f32) -> bool:
    needs32 = other = 0
    for out in node.outputs:
        if out.dtype != f32:
            continue
        for cons, slot in consumers.get(id(out), ()):
            if slot in FP32_ONLY_SLOTS.get(cons.op, ()) or id(cons) in auto_kept or _casts_to_int(cons):
                needs32 += 1
            elif slot in ANY_DTYPE_SLOTS.get(cons.op, ()):
                continue  # Shape/Cast take any dtype: no preference either way
            else:
                other += 1
    return bool(needs32 and not other)


def _casts_to_int(node) -> bool:
    """A Cast to a non-float type: the float arithmetic in front of it is index/shape math."""
    import onnx

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    return node.op == "Cast" and node.attrs.get("to") not in floats


def _consumer_map(graph) -> dict[int, list]:
    cons: dict[int, list] = {}
    for node in graph.nodes:
        for slot, t in enumerate(node.inputs):
            if t is not None:
                cons.setdefault(id(t), []).append((node, slot))
    return cons

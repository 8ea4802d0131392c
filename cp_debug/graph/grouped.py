"""A stage's segment plan as two whole-stage models, for one session each instead of one per segment.

`exposed_model` is the stage with every probe and every tensor that crosses a cut added to its outputs: one
run gives every segment's boundary and probe values (the reference's, or a candidate's propagated ones).
`cut_model` is the stage with every cut *opened*: a node that reads a tensor an earlier segment made reads a
graph input `<tensor>::cut` instead, so each segment runs on whatever is fed there. Fed the reference's boundary
values, one run gives every segment's local values at once — what the segment-by-segment lockstep gets from
one session per segment. Used by `cp_debug.bisect.lockstep_grouped` on GPUs, where building a session per
segment dominates the run.
"""

from __future__ import annotations

import onnx

from cp_debug.graph.plan import SegmentPlan, _node_reads

CUT_SUFFIX = "::cut"


def crossing_tensors(plan: SegmentPlan) -> tuple[str, ...]:
    """Tensors an earlier segment produces and a later one reads (not graph inputs), in plan order."""
    graph_inputs = set(plan.graph_inputs)
    return tuple(dict.fromkeys(t for seg in plan.segments for t in seg.inputs if t not in graph_inputs))


def exposed_model(model: onnx.ModelProto, tensors: list[str] | tuple[str, ...],
                  types: dict[str, onnx.TypeProto]) -> onnx.ModelProto:
    """`model` with `tensors` added to its outputs (typed from `types` where known)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in dict.fromkeys(tensors):
        if t in have:
            continue
        vi = _value_info(t, t, types)
        m.graph.output.append(vi)
    return m


def cuts_openable(model: onnx.ModelProto, plan: SegmentPlan) -> bool:
    """False when a subgraph (If/Loop body) reads a crossing tensor, which a rename of node inputs cannot open."""
    crossing = set(crossing_tensors(plan))
    return not any((set(_node_reads(n)) - set(n.input)) & crossing for n in model.graph.node)


def cut_model(model: onnx.ModelProto, plan: SegmentPlan, types: dict[str, onnx.TypeProto],
              outputs: list[str] | tuple[str, ...], shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto | None:
    """The stage with every cut opened (see the module docstring), with `outputs` as its outputs; each opened
    input shaped as the array that will feed it (`shapes`). None when the cuts cannot be opened
    (`cuts_openable`)."""
    crossing = set(crossing_tensors(plan))
    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = m.graph.node
    seg_of = {k: seg.index for seg in plan.segments for k in seg.nodes}
    made_in = {t: seg.index for seg in plan.segments for k in seg.nodes for t in model.graph.node[k].output if t}
    opened: list[str] = []
    for k, node in enumerate(nodes):
        s = seg_of.get(k)
        if s is None:  # Constant nodes: not part of any segment, read where needed
            continue
        sub_reads = set(_node_reads(node)) - set(node.input)
        if sub_reads & crossing:
            return None
        for j, t in enumerate(node.input):
            if t in crossing and made_in.get(t, s) < s:
                node.input[j] = t + CUT_SUFFIX
                opened.append(t)
    for t in dict.fromkeys(opened):
        vi = _value_info(t + CUT_SUFFIX, t, types, shapes.get(t))
        m.graph.input.append(vi)
    del m.graph.output[:]
    for t in dict.fromkeys(outputs):
        vi = _value_info(t, t, types)
        m.graph.output.append(vi)
    return m


def _value_info(name: str, tensor: str, types: dict[str, onnx.TypeProto],
                shape: tuple[int, ...] | None = None) -> onnx.ValueInfoProto:
    """Typed by element type (shape inference's shapes of inner tensors can be missing or symbolic); shaped only
    when `shape` is given (an input: ONNX Runtime checks what is fed against it)."""
    vi = onnx.ValueInfoProto(name=name)
    t = types.get(tensor)
    vi.type.tensor_type.elem_type = (t.tensor_type.elem_type if t is not None and t.tensor_type.elem_type
                                     else onnx.TensorProto.FLOAT)
    if shape is not None:
        dims = vi.type.tensor_type.shape
        for d in shape:
            dims.dim.add().dim_value = int(d)
    return vi

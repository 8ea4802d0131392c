"""Consecutive segments of a plan run as one session: groups, and each group's two models.

A group is a run of consecutive segments (`group_segments`, sized so that the tensors it exposes stay under
a byte budget). `merge_segments` makes it one `Segment` whose outputs are every member's outputs — its probes
and the tensors that cross the cuts inside it — so the group's model (`graph.plan.segment_model`) gives in one
run what the members' models give one by one. `open_cuts` turns that model into the *local* one: a node that
reads a tensor an earlier member made reads a graph input `<tensor>::cut` instead, so each member runs on
whatever is fed there — fed the reference's values, one run gives every member's local values at once.
Used by `cp_debug.bisect.stages.lockstep_grouped` (`cpdebug bisect --lockstep-mode grouped`).

`side_by_side` joins cuts that each start from their own boundary (local error's segments, `cut_segment`) into one
model whose every boundary read is a `::cut` input: one session and one run for a group of probes' local values
(`cp_debug.bisect.stages.local_error`), groups formed by `side_by_side_groups`.
"""

from __future__ import annotations

import numpy as np
import onnx

from cp_debug.graph.onnx_files import copy_model
from cp_debug.graph.plan import Segment, SegmentPlan, input_info, node_reads, standalone_model, tensor_types

CUT_SUFFIX = "::cut"


def tensor_bytes(types: dict[str, onnx.TypeProto], tensor: str) -> int:
    """Bytes of a tensor whose inferred shape is static (0 when unknown)."""
    t = types.get(tensor)
    if t is None or not t.tensor_type.HasField("shape"):
        return 0
    n = 1
    for d in t.tensor_type.shape.dim:
        if not d.HasField("dim_value"):
            return 0
        n *= d.dim_value
    try:
        return n * onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type).itemsize
    except (KeyError, ValueError):  # an element type numpy has no dtype for
        return 0


def group_segments(plan: SegmentPlan, types: dict[str, onnx.TypeProto], budget_bytes: int) -> list[list[Segment]]:
    """Consecutive segments, grouped while the tensors they expose (outputs: probes and cut tensors) stay
    within `budget_bytes`; a segment over the budget is a group of its own."""
    groups: list[list[Segment]] = []
    size = 0
    for seg in plan.segments:
        b = sum(tensor_bytes(types, t) for t in seg.outputs)
        if groups and size + b <= budget_bytes:
            groups[-1].append(seg)
            size += b
        else:
            groups.append([seg])
            size = b
    return groups


def merge_segments(model: onnx.ModelProto, members: list[Segment], index: int) -> Segment:
    """One Segment for consecutive `members`: their nodes, the tensors they read from before the group, every
    member's outputs and probes."""
    nodes = model.graph.node
    made: set[str] = set()
    inputs: list[str] = []
    for seg in members:
        inputs += [t for t in seg.inputs if t not in made]
        made.update(t for k in seg.nodes for t in nodes[k].output if t)
    return Segment(index, tuple(k for s in members for k in s.nodes), tuple(dict.fromkeys(inputs)),
                   tuple(dict.fromkeys(t for s in members for t in s.outputs)),
                   tuple(dict.fromkeys(t for s in members for t in s.probes)))


def inner_cuts(model: onnx.ModelProto, members: list[Segment]) -> tuple[str, ...]:
    """Tensors a member reads that an earlier member of the group made."""
    nodes = model.graph.node
    made: set[str] = set()
    out: list[str] = []
    for seg in members:
        out += [t for t in seg.inputs if t in made]
        made.update(t for k in seg.nodes for t in nodes[k].output if t)
    return tuple(dict.fromkeys(out))


def cuts_openable(model: onnx.ModelProto, members: list[Segment]) -> bool:
    """False when a subgraph (If/Loop body) reads an inner cut tensor, which renaming node inputs cannot open."""
    cuts = set(inner_cuts(model, members))
    nodes = model.graph.node
    return not any((set(node_reads(nodes[k])) - set(nodes[k].input)) & cuts for s in members for k in s.nodes)


def open_cuts(group_model: onnx.ModelProto, stage_model: onnx.ModelProto, members: list[Segment],
              shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """`group_model` (`segment_model` of `merge_segments(members)`) with every inner cut opened; each opened
    input shaped as the array that will feed it (`shapes`)."""
    cuts = set(inner_cuts(stage_model, members))
    member_of = [i for i, s in enumerate(members) for _ in s.nodes]  # the group model's non-Constant nodes
    made_in = {t: i for i, s in enumerate(members) for k in s.nodes for t in stage_model.graph.node[k].output if t}
    m = copy_model(group_model)
    body = [n for n in m.graph.node if n.op_type != "Constant"]
    if len(body) != len(member_of):
        raise ValueError("open_cuts: the group model's nodes are not the members' nodes")
    opened: list[str] = []
    for node, i in zip(body, member_of):
        for j, t in enumerate(node.input):
            if t in cuts and made_in.get(t, i) < i:
                node.input[j] = t + CUT_SUFFIX
                opened.append(t)
    types = {vi.name: vi.type for vi in m.graph.output}
    for t in dict.fromkeys(opened):
        vi = onnx.ValueInfoProto(name=t + CUT_SUFFIX)
        vi.type.tensor_type.elem_type = (types[t].tensor_type.elem_type if t in types
                                         else onnx.TensorProto.FLOAT)
        for d in shapes[t]:
            vi.type.tensor_type.shape.dim.add().dim_value = int(d)
        m.graph.input.append(vi)
    return m


def shapes_of(values: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {t: tuple(np.shape(v)) for t, v in values.items()}


def static_types(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> dict[str, onnx.TypeProto]:
    """Inferred types with the graph inputs fixed to `shapes` (concrete sizes where the file has symbols)."""
    from cp_debug.graph.model import without_weights

    m = without_weights(model)  # a copy to edit, without the weights' values inference does not read
    for vi in m.graph.input:
        if vi.name in shapes:
            dims = vi.type.tensor_type.shape
            del dims.dim[:]
            for d in shapes[vi.name]:
                dims.dim.add().dim_value = int(d)
    return tensor_types(m)


def side_by_side_groups(segments: list[Segment], sizes: dict[str, int], budget_bytes: int,
                        model: onnx.ModelProto | None = None) -> list[list[Segment]]:
    """`segments` (cuts of one graph, each from its own boundary) in groups that `side_by_side` can join, first fit
    in order: no node in two members of a group (cuts that share a node go to different groups), the members'
    outputs within `budget_bytes` (`sizes`: bytes by tensor; a segment over the budget is a group of its own). With
    `model` (the graph they are cut from), a node two members share computes the same in both where everything above
    it in each is the same nodes from the same boundary tensors (`_computed_as`): it is run once for both, no
    conflict (a decoder's mask subgraph, its residual chain of SkipLayerNorms, a GroupQueryAttention whose output and
    KV cache are three probes: 72 sessions of a 24-layer LLM's local errors, one each, before)."""
    table: dict = {}
    groups: list[tuple[list[Segment], dict[int, int], list[int]]] = []  # members, their nodes' computations, [bytes]
    for seg in segments:
        b = sum(sizes.get(t, 0) for t in seg.outputs)
        nodes = _computed_as(model, seg, table)
        for members, used, size in groups:
            if size[0] + b <= budget_bytes and all(used.get(k, c) == c for k, c in nodes.items()):
                members.append(seg)
                used.update(nodes)
                size[0] += b
                break
        else:
            groups.append(([seg], dict(nodes), [b]))
    return [members for members, _, _ in groups]


def _computed_as(model: onnx.ModelProto | None, seg: Segment, table: dict) -> dict[int, int]:
    """Each node of `seg` → the id of what it computes there (`table`, shared by the segments of one graph: the node,
    and for each tensor it reads, the boundary tensor, or the id of the node in `seg` making it, or the tensor from
    outside: an initializer); without `model`, an id of its own per segment (a shared node always a conflict)."""
    if model is None:
        return {k: -1 - seg.index for k in seg.nodes}
    nodes, boundary = model.graph.node, set(seg.inputs)
    made: dict[str, tuple[int, int]] = {}
    out: dict[int, int] = {}
    for k in seg.nodes:  # in execution order: a node's producers come first
        reads = tuple(("cut", t) if t in boundary else made.get(t, ("outer", t)) for t in node_reads(nodes[k]))
        out[k] = table.setdefault((k, reads), len(table))
        made.update((t, (out[k], j)) for j, t in enumerate(nodes[k].output) if t)
    return out


def side_by_side(model: onnx.ModelProto, members: list[Segment], inputs: dict, types: dict[str, onnx.TypeProto],
                 initializers: dict[str, onnx.TensorProto], output_shapes: dict[str, tuple]) -> onnx.ModelProto:
    """One model running `members` side by side, each on its own boundary: every read of a member's boundary
    tensor `t` reads the graph input `t::cut` (so a member never reads what another one computed, and one run on
    the reference's values gives every member's local value); outputs are the members' targets. `inputs` maps each
    boundary tensor to what will feed it (anything with a numpy `dtype` and a `shape`); output types come from
    `types` (the whole graph's), else float32 of `output_shapes`. Members share a node only where it computes the
    same in each (`side_by_side_groups` with the model: it is run once) and hold no subgraph reading a boundary
    tensor (renaming inputs cannot reach it)."""
    nodes = model.graph.node
    body: list[onnx.NodeProto] = []
    cut_inputs: list[str] = []
    emitted: set[int] = set()  # a node members share (the same computation in each: side_by_side_groups) once
    for seg in members:
        boundary = set(seg.inputs)
        for k in seg.nodes:
            if k in emitted:
                continue
            emitted.add(k)
            node = onnx.NodeProto()
            node.CopyFrom(nodes[k])
            if (set(node_reads(node)) - set(node.input)) & boundary:
                raise ValueError(f"side_by_side: node {node.name or node.op_type!r} reads a boundary tensor in a "
                                 "subgraph")
            for j, t in enumerate(node.input):
                if t in boundary:
                    node.input[j] = t + CUT_SUFFIX
                    cut_inputs.append(t)
            body.append(node)
    g_inputs = [input_info(t + CUT_SUFFIX, inputs[t]) for t in dict.fromkeys(cut_inputs)]
    g_outputs = []
    for t in dict.fromkeys(o for seg in members for o in seg.outputs):
        vi = onnx.ValueInfoProto(name=t)
        if t in types and types[t].tensor_type.HasField("shape"):
            vi.type.CopyFrom(types[t])
        else:
            vi.type.tensor_type.elem_type = types[t].tensor_type.elem_type if t in types else onnx.TensorProto.FLOAT
            for d in output_shapes[t]:
                vi.type.tensor_type.shape.dim.add().dim_value = int(d)
        g_outputs.append(vi)
    return standalone_model(model, body, g_inputs, g_outputs, initializers,
                            f"{model.graph.name or 'graph'}_side_by_side", "cp_debug.local_error")

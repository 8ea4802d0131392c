"""A stage's graph cut into consecutive segments at probe tensors, and each segment as a standalone model.

`plan_segments` cuts after the node producing each probe tensor (Constant nodes are copied where they are
read) and records which tensors cross each cut and when each is last read; `segment_model` builds one
segment's model, typed from the arrays that will feed it. Used by lockstep execution
(`cp_debug.bisect.stages.lockstep`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx

from cp_debug.errors import BadInputError
from cp_debug.graph.bodies import bodies


@dataclass(frozen=True)
class Segment:
    index: int
    nodes: tuple[int, ...]  # indices into graph.node, in execution order
    inputs: tuple[str, ...]  # tensors read here that an earlier segment (or the graph input) produced
    outputs: tuple[str, ...]  # tensors produced here that are probes, read later, or graph outputs
    probes: tuple[str, ...]  # the probe tensors this segment produces


@dataclass
class SegmentPlan:
    segments: list[Segment]
    graph_inputs: tuple[str, ...]
    graph_outputs: tuple[str, ...]
    last_use: dict[str, int]  # tensor -> the last segment that reads it (graph outputs: past the end)
    missing: tuple[str, ...]  # probe tensors no node produces
    upstream: dict[str, tuple[str, ...]]  # probe tensor -> the nearest probe tensors (or graph inputs) it depends on

    def segment_of(self, tensor: str) -> Segment | None:
        for seg in self.segments:
            if tensor in seg.outputs and tensor in seg.probes:
                return seg
        return None


def plan_segments(model: onnx.ModelProto, probes: Iterable[str]) -> SegmentPlan:
    """Cut `model` after the node producing each probe tensor; Constant nodes are copied where they are read."""
    graph = model.graph
    nodes = list(graph.node)
    initializers = {i.name for i in graph.initializer}
    graph_inputs = tuple(i.name for i in graph.input if i.name not in initializers)
    graph_outputs = tuple(o.name for o in graph.output)
    constants = {o for n in nodes if n.op_type == "Constant" for o in n.output}
    order = _topological(nodes, set(graph_inputs) | initializers)
    producer = {t: k for k in order for t in nodes[k].output if t}
    probe_list = list(dict.fromkeys(probes))
    missing = tuple(p for p in probe_list if p not in producer and p not in graph_inputs)
    wanted = set(p for p in probe_list if p in producer and p not in constants)
    pos = {k: j for j, k in enumerate(order)}
    cuts = sorted({pos[producer[p]] for p in wanted})
    if not cuts or cuts[-1] != len(order) - 1:
        cuts.append(len(order) - 1)
    ranges, start = [], 0
    for c in cuts:
        ks = tuple(k for k in order[start:c + 1] if nodes[k].op_type != "Constant")
        if ks:
            ranges.append(ks)
        start = c + 1
    reads = [_reads(nodes, ks) - initializers - constants for ks in ranges]
    made = [{t for k in ks for t in nodes[k].output if t} for ks in ranges]
    last_use: dict[str, int] = {}
    for s, r in enumerate(reads):
        for t in r:
            last_use[t] = s
    for t in graph_outputs:
        last_use[t] = len(ranges)
    segments = []
    for s, ks in enumerate(ranges):
        outs = [t for k in ks for t in nodes[k].output
                if t and (t in wanted or t in graph_outputs or last_use.get(t, -1) > s)]
        ins = [t for k in ks for t in node_reads(nodes[k]) if t in reads[s] and t not in made[s]]
        segments.append(Segment(s, ks, tuple(dict.fromkeys(ins)), tuple(dict.fromkeys(outs)),
                                tuple(t for t in dict.fromkeys(outs) if t in wanted)))
    upstream = _nearest_upstream(nodes, producer, wanted, set(graph_inputs), constants | initializers)
    return SegmentPlan(segments, graph_inputs, graph_outputs, last_use, missing, upstream)


def segment_model(model: onnx.ModelProto, seg: Segment, inputs: dict[str, np.ndarray],
                  types: dict[str, onnx.TypeProto], initializers: dict[str, onnx.TensorProto] | None = None,
                  output_shapes: dict[str, tuple] | None = None) -> onnx.ModelProto:
    """A standalone model of one segment; inputs typed and shaped from the arrays that will feed it (or anything
    with a numpy `dtype` and a `shape`: a device tensor's description), outputs
    from `types` (the whole graph's inferred types, see `tensor_types`), inference on the segment, or
    `output_shapes` (e.g. the reference's values) where neither gives a shape."""
    graph = model.graph
    nodes = list(graph.node)
    inits = initializers if initializers is not None else {i.name: i for i in graph.initializer}
    body = [nodes[k] for k in seg.nodes]
    # a subgraph (If / Loop / Scan) is inferred on both of an If's branches whatever the sample takes: the branch
    # not taken, shaped at this sample's sizes, may not infer (silero-vad's 8 kHz branch fed 16 kHz frames), so
    # its inputs keep the whole graph's symbolic dims, as the file declares them and ONNX Runtime loads it
    loose = types if any(bodies(n) for n in body) else None
    g_inputs = [_as_declared(input_info(t, inputs[t], loose.get(t) if loose else None), types.get(t))
                for t in seg.inputs]
    g_outputs = []
    untyped = []
    for t in seg.outputs:
        vi = onnx.ValueInfoProto(name=t)
        if t in types:
            vi.type.CopyFrom(types[t])
        if not vi.type.tensor_type.HasField("shape"):
            untyped.append(t)
        g_outputs.append(vi)
    m = standalone_model(model, body, g_inputs, g_outputs, inits,
                         f"{graph.name or 'graph'}_segment{seg.index}", "cp_debug.lockstep")
    if untyped:  # the whole graph's inference left these open: infer on the (statically shaped) segment
        found = tensor_types(m)
        for vi in m.graph.output:
            if vi.name in untyped and vi.name in found:
                vi.type.CopyFrom(found[vi.name])
            elif vi.name in untyped and not vi.type.tensor_type.elem_type:
                vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT  # shape left open: ORT does not need it
            tt = vi.type.tensor_type
            if vi.name in untyped and not tt.HasField("shape") and output_shapes and vi.name in output_shapes:
                for d in output_shapes[vi.name]:  # the onnx checker wants a shape on every graph output
                    tt.shape.dim.add().dim_value = int(d)
    return m


def _as_declared(vi: onnx.ValueInfoProto, declared: onnx.TypeProto | None) -> onnx.ValueInfoProto:
    """A float64 tensor of the graph fed as float32 (the runners give every float as float32) is declared float64,
    as the graph computes it: its readers' types follow from it (swift-f0's `Cast(to=double)` → Softmax, whose
    segment declared a float input and a double output: ONNX Runtime refused the cut, exit 2, on a valid file).
    The runner casts the feed to the declared type."""
    tt = vi.type.tensor_type
    if (declared is not None and declared.tensor_type.elem_type == onnx.TensorProto.DOUBLE
            and tt.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)):
        tt.elem_type = onnx.TensorProto.DOUBLE
    elif (declared is not None and declared.tensor_type.elem_type == onnx.TensorProto.FLOAT16
          and tt.elem_type == onnx.TensorProto.FLOAT):
        tt.elem_type = onnx.TensorProto.FLOAT16  # a user's float16 file's inner tensor, its value kept in float32
    return vi


def input_info(name: str, value, declared: onnx.TypeProto | None = None) -> onnx.ValueInfoProto:
    """A graph input typed and shaped as `value` will feed it: an array, or what stands for one (anything with a
    numpy `dtype` and a `shape`: a device tensor's description). With `declared` (the type the whole graph gives
    it) of the same rank, a dim it leaves open stays open (symbolic) instead of this value's size."""
    from onnx import helper

    if not (isinstance(getattr(value, "dtype", None), np.dtype) and hasattr(value, "shape")):
        value = np.asarray(value)
    shape: list = list(value.shape)
    dims = declared.tensor_type.shape.dim if declared is not None and declared.HasField("tensor_type") else None
    if dims is not None and declared.tensor_type.HasField("shape") and len(dims) == len(shape):
        shape = [d if dims[k].HasField("dim_value") else f"{name}_dim{k}" for k, d in enumerate(shape)]
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), shape)


def standalone_model(model: onnx.ModelProto, body: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
                     outputs: list[onnx.ValueInfoProto], initializers: dict[str, onnx.TensorProto], name: str,
                     producer: str) -> onnx.ModelProto:
    """A model of `body` (nodes of `model`, or edited copies of them) with the Constant nodes and initializers of
    `model` it reads, `model`'s opsets, IR version and functions."""
    from onnx import helper

    from cp_debug.graph.model import cut_ir_version
    from cp_debug.graph.onnx_files import add_initializers

    const_nodes = {o: n for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    reads = sorted({t for n in body for t in node_reads(n)})
    g = helper.make_graph([const_nodes[t] for t in reads if t in const_nodes] + list(body), name, inputs, outputs)
    m = helper.make_model(g, opset_imports=list(model.opset_import), producer_name=producer)
    add_initializers(m.graph, [initializers[t] for t in reads if t in initializers])  # any size
    m.ir_version = cut_ir_version(model)
    m.functions.extend(model.functions)
    return m


def cut_segment(model: onnx.ModelProto, targets: Iterable[str], boundary: Iterable[str], index: int = 0) -> Segment:
    """The nodes that compute `targets` from the `boundary` tensors (plus initializers and Constant nodes), as a
    Segment for `segment_model`: a cut between any known tensors, typed from the whole graph's `tensor_types`
    computed once — no shape inference or graph surgery per cut (local error cuts one segment per probe); the graph's
    nodes, producers, reads and order are worked out once a model (`_index`)."""
    known = _index(model)
    nodes, initializers, producer, graph_inputs = known.nodes, known.initializers, known.producer, known.graph_inputs
    targets, stop = list(dict.fromkeys(targets)), set(boundary)
    picked: set[int] = set()
    seen: set[str] = set()
    stack = list(targets)
    while stack:
        t = stack.pop()
        if t in seen or t in initializers or (t in stop and t not in targets):
            continue
        seen.add(t)
        k = producer.get(t)
        if k is None and t not in graph_inputs:
            raise BadInputError(f"tensor {t!r} is neither produced by a node nor a graph input")
        if k is None or k in picked or nodes[k].op_type == "Constant":
            continue
        picked.add(k)
        stack.extend(known.reads[k])
    order = [k for k in known.order if k in picked]
    made = {t for k in order for t in known.outputs[k]}
    reads = (t for k in order for t in known.reads[k] if t not in made)
    inputs = tuple(t for t in dict.fromkeys(reads) if t in stop or t in graph_inputs)
    return Segment(index, tuple(order), inputs, tuple(targets), tuple(targets))


def in_series(model: onnx.ModelProto, seg: Segment, counts: "str | dict[str, int]") -> int:
    """The most nodes of `counts`' op types (an op type, or op type -> the matmuls one such node holds in series:
    QMoE's two) one path through `seg` passes (its nodes in execution order): the longest chain of them in series.
    Parallel ones (a layer's q, k and v projections) count once, as their roundings meet a tensor side by side, not
    one after the other."""
    counts = {counts: 1} if isinstance(counts, str) else counts
    nodes = model.graph.node
    depth: dict[str, int] = {}
    most = 0
    for k in seg.nodes:
        n = nodes[k]
        d = max((depth.get(t, 0) for t in node_reads(n)), default=0) + counts.get(n.op_type, 0)
        depth.update((t, d) for t in n.output if t)
        most = max(most, d)
    return most


@dataclass(frozen=True)
class _GraphIndex:
    nodes: list
    initializers: set[str]
    producer: dict[str, int]
    graph_inputs: set[str]
    reads: list[list[str]]  # node_reads of each node
    outputs: list[list[str]]  # each node's named outputs
    order: list[int]  # execution order


def _index(model: onnx.ModelProto) -> _GraphIndex:
    """What `cut_segment` reads of a model's graph, worked out once a model: the lockstep and the local errors cut
    a segment per probe, and each cut walked the whole graph (the protobuf's nodes, a topological check): 25 s of a
    1,746-node DenseNet's bisect on the CPU machine. The last few models are remembered (by identity, with their
    node count: a graph cut is never edited in place)."""
    graph = model.graph
    found = _INDEXES.get(id(model))
    if found is not None and found[0] is model and len(found[1].nodes) == len(graph.node):
        return found[1]
    nodes = list(graph.node)
    initializers = {i.name for i in graph.initializer}
    index = _GraphIndex(nodes, initializers, {t: k for k, n in enumerate(nodes) for t in n.output if t},
                        {i.name for i in graph.input if i.name not in initializers},
                        [node_reads(n) for n in nodes], [[t for t in n.output if t] for n in nodes], [])
    index.order.extend(_topological(nodes, index.graph_inputs | initializers))
    with _INDEX_LOCK:  # the bisect's helper threads cut segments too
        while len(_INDEXES) >= 8:
            _INDEXES.pop(next(iter(_INDEXES)))
        _INDEXES[id(model)] = (model, index)
    return index


_INDEXES: dict[int, tuple[onnx.ModelProto, _GraphIndex]] = {}
_INDEX_LOCK = threading.Lock()


def tensor_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """The type (element type, and the shape where known, possibly symbolic) of every tensor inference can type
    (the declared types where it cannot)."""
    from cp_debug.graph.model import inferred_graph

    g = inferred_graph(model)
    return {vi.name: vi.type for vi in list(g.input) + list(g.value_info) + list(g.output)
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type}


# -- helpers -------------------------------------------------------------------------------------------
def node_attr(node: onnx.NodeProto, name: str, default=None):
    """The value of `node`'s attribute `name` (onnx.helper's reading: ints, floats, bytes, lists), `default` where it
    has none."""
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def node_reads(node: onnx.NodeProto) -> list[str]:
    """A node's inputs, plus the outer-scope names its subgraphs (If/Loop/Scan bodies) read."""
    out = [t for t in node.input if t]
    for g in bodies(node):
        inner = {t for n in g.node for t in n.output} | {i.name for i in g.input} | {i.name for i in g.initializer}
        out += [t for n in g.node for t in node_reads(n) if t not in inner]
    return out


def _reads(nodes: list, ks: Iterable[int]) -> set[str]:
    return {t for k in ks for t in node_reads(nodes[k])}


def _topological(nodes: list, available: set[str]) -> list[int]:
    """Node indices in execution order: the file's order when it is already topological (the ONNX rule)."""
    have = set(available)
    ok = True
    for n in nodes:
        if any(t not in have for t in node_reads(n)):
            ok = False
            break
        have.update(t for t in n.output if t)
    if ok:
        return list(range(len(nodes)))
    producer = {t: k for k, n in enumerate(nodes) for t in n.output if t}
    order, done, state = [], set(), {}

    def visit(k):  # iterative DFS would be nicer for deep graphs; recursion depth is raised below
        if k in done:
            return
        if state.get(k):
            raise BadInputError("the ONNX graph has a cycle: it cannot be run")
        state[k] = True
        for t in node_reads(nodes[k]):
            if t in producer:
                visit(producer[t])
        done.add(k)
        order.append(k)

    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * len(nodes) + 100))
    for k in range(len(nodes)):
        visit(k)
    return order


def _nearest_upstream(nodes, producer: dict[str, int], probes: set[str], graph_inputs: set[str],
                      ignore: set[str]) -> dict[str, tuple[str, ...]]:
    out = {}
    for p in probes:
        found, seen, stack = [], set(), [t for t in node_reads(nodes[producer[p]])]
        while stack:
            t = stack.pop()
            if t in seen or t in ignore:
                continue
            seen.add(t)
            if t in probes or t in graph_inputs:
                found.append(t)
            elif t in producer:
                stack.extend(node_reads(nodes[producer[t]]))
        out[p] = tuple(sorted(found))
    return out

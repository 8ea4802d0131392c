"""A probe the deployed file computes only inside a fused op, told apart from one it lacks (issue 116).

Between the probes both graphs hold, the deployed file may compute a module's output inside one op that holds no
tensor of it: ONNX Runtime GenAI's builder's `MoE` / `QMoE` takes the router's logits (or its chosen scores) and does
the top-k, the routing weights' normalisation and the experts' weighted sum inside; `GroupQueryAttention` rotates q
and k inside. Such a probe is not missing — nothing the deployment computes is left out — but no tensor of it can be
compared: it is said as inside that op (`ProbeMap.inside`) and counted apart from the probes not found.

Where the deployed file does hold the tensor, outside the fused op, it is mapped by computation rather than counted:
between the same probes on both sides (the nearest ones both hold, before and after it), the one node of the op that
writes ours (the router's `TopK`) with an output of its shape and type in that slot, on each side.
"""

from __future__ import annotations

import onnx

from cp_debug.probes.graph_diff import FUSED_FORMS

# ONNX Runtime's attention fusions: each computes its inner q / k / v (rotated), scores and weights inside
ATTENTION_FUSIONS = frozenset({"GroupQueryAttention", "MultiHeadAttention", "Attention", "PackedAttention",
                               "PackedMultiHeadAttention", "SparseAttention", "PagedAttention", "RotaryEmbedding"})
NOT_FOUND = "not found in the deployed graph"


class Flow:
    """One graph's data flow: each tensor's producer (node, slot), each tensor's readers."""

    def __init__(self, model: onnx.ModelProto):
        self.nodes = model.graph.node
        self.producer = {t: (i, k) for i, n in enumerate(self.nodes) for k, t in enumerate(n.output) if t}
        self.readers: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for t in dict.fromkeys(n.input):
                if t:
                    self.readers.setdefault(t, []).append(i)
        self.outputs = {o.name for o in model.graph.output}
        self.inputs = {i.name for i in model.graph.input}

    def between(self, entries: set[str], exits: set[str]) -> set[int]:
        """The nodes on a path from a tensor of `entries` to one of `exits` (neither passed through)."""
        ahead, todo = set(), [j for t in entries for j in self.readers.get(t, [])]
        while todo:
            j = todo.pop()
            if j not in ahead:
                ahead.add(j)
                todo += [r for t in self.nodes[j].output if t and t not in exits for r in self.readers.get(t, [])]
        behind, todo = set(), [self.producer[t][0] for t in exits if t in self.producer]
        while todo:
            j = todo.pop()
            if j not in behind:
                behind.add(j)
                todo += [self.producer[t][0] for t in self.nodes[j].input if t and t not in entries
                         and t in self.producer]
        return ahead & behind

    def around(self, t: str, held: dict[str, str]) -> tuple[set[str], set[str]] | None:
        """The tensors of `held` nearest to the computed tensor `t` before it and after it (`nearest`); None where
        `t` is no node's output or either side holds none."""
        if t not in self.producer:
            return None
        before, after = self.nearest(t, held, False), self.nearest(t, held, True)
        return (before, after) if before and after else None

    def nearest(self, t: str, held: dict[str, str], forward: bool) -> set[str]:
        """The tensors of `held` nearest to `t` upstream (or downstream, `forward`), a graph input or output
        counting as held where `held` names it; the walk stops at each."""
        found, seen, todo = set(), set(), [t]
        while todo:
            cur = todo.pop()
            if cur in seen:
                continue
            seen.add(cur)
            if cur != t and cur in held:
                found.add(cur)
                continue
            if forward:
                todo += [o for j in self.readers.get(cur, []) for o in self.nodes[j].output if o]
            elif cur in self.producer:
                todo += [x for x in self.nodes[self.producer[cur][0]].input if x]
        return found


def held_both(a: Flow, b: Flow, our_tensors: dict[str, str], tensors: dict[str, str]) -> dict[str, str]:
    """Our export's tensor -> the file's, for every probe mapped so far whose file tensor is computed there or an
    input (`our_tensors`, `tensors`: probe -> tensor on each side), and the graph inputs and outputs both have."""
    held = {our_tensors[p]: t for p, t in tensors.items() if p in our_tensors and (t in b.producer or t in b.inputs)}
    held.update({t: t for t in (a.inputs & b.inputs) | (a.outputs & b.outputs)})
    return held


def around_lost(a: Flow, b: Flow, lost: list[str], our_tensors: dict[str, str], tensors: dict[str, str]):
    """For each probe of `lost` whose tensor in our export lies between probes both graphs hold: (probe, our tensor,
    `held_both`, the nearest held before it, after it). `held_both` is read as each comes (a caller may map the
    probes before it meanwhile)."""
    for q in lost:
        t = our_tensors[q]
        held = held_both(a, b, our_tensors, tensors)
        if (around := a.around(t, held)) is not None:
            yield q, t, held, *around


def inside_fused(ours: onnx.ModelProto, foreign: onnx.ModelProto, our_tensors: dict[str, str],
                 tensors: dict[str, str], op_types: dict[str, str], how: dict[str, str], unmapped: dict[str, str],
                 types) -> tuple[dict[str, str], set[str]]:
    """Each probe "not found in the deployed graph" (`unmapped`) whose module's computation the deployed file holds
    inside a fused op → that op ("MoE '/model/layers.0/moe/MoE'"), its reason said so; one whose tensor the file
    holds outside it is mapped instead (`tensors`, `op_types`, `how` as "structure") and returned apart: a probe so
    found ends no graph-difference segment (`ProbeMap.segment_ends`: the routing written out around the fused op is
    one computation with it). `our_tensors`: cp_debug's export's probe tensors; `types(model)`: a graph's types."""
    inside: dict[str, str] = {}
    computed: set[str] = set()
    lost = [q for q, why in unmapped.items() if why.startswith(NOT_FOUND) and q in our_tensors]
    if not lost:
        return inside, computed
    a, b = Flow(ours), Flow(foreign)
    mine, theirs = types(ours), types(foreign)
    for q, t, held, before, after in around_lost(a, b, lost, our_tensors, tensors):
        region_a = a.between(before, after)
        region_b = b.between({held[x] for x in before}, {held[x] for x in after})
        i, slot = a.producer[t]
        op = a.nodes[i].op_type
        found = _computed_alike(a, b, region_a, region_b, op, slot, mine.get(t), (mine, theirs),
                                set(tensors.values()))
        if found is not None and i in region_a:
            tensors[q], op_types[q], how[q] = found, op, "structure"
            computed.add(q)
            del unmapped[q]
            continue
        fused = [j for j in sorted(region_b) if _fuses(b.nodes[j], op)]
        if fused:
            inside[q] = ", ".join(f"{b.nodes[j].op_type} {b.nodes[j].name!r}" for j in fused[:2])
            unmapped[q] = (f"inside the deployed graph's fused op {inside[q]}: the file computes this module's output "
                           "there and holds no tensor of it, so none is compared")
    return inside, computed


def _computed_alike(a: Flow, b: Flow, region_a: set[int], region_b: set[int], op: str, slot: int, want,
                    types: tuple, taken: set[str]) -> str | None:
    """The deployed tensor written by the one `op` node of `region_b` in output `slot`, of `want`'s shape and element
    type and no other probe's, where `region_a` (ours) holds one such node too; else None. `types`: both graphs'."""
    def alike(flow: Flow, region: set[int], known: dict, other: set[str]) -> list[str]:
        outs = [flow.nodes[j].output for j in sorted(region) if flow.nodes[j].op_type == op]
        return [o[slot] for o in outs if slot < len(o) and o[slot] and o[slot] not in other
                and _same_type(known.get(o[slot]), want)]

    found = alike(b, region_b, types[1], taken)
    return found[0] if len(alike(a, region_a, types[0], set())) == 1 and len(found) == 1 else None


def _same_type(got, want) -> bool:
    """Two tensor types of one element type and shape (a dimension open on either side fits)."""
    if got is None or want is None or not got.HasField("tensor_type") or not want.HasField("tensor_type"):
        return False
    g, w = got.tensor_type, want.tensor_type
    if g.elem_type != w.elem_type or g.HasField("shape") != w.HasField("shape"):
        return False
    dims = [(x.dim_value if x.HasField("dim_value") else None, y.dim_value if y.HasField("dim_value") else None)
            for x, y in zip(g.shape.dim, w.shape.dim)]
    return len(g.shape.dim) == len(w.shape.dim) and all(x is None or y is None or x == y for x, y in dims)


def _fuses(node, op: str) -> bool:
    """Whether `node` is a fused op that may compute ours, written with `op`, inside it: a form of `FUSED_FORMS`
    whose ops hold `op` (the MoE's TopK, Softmax, weighted sum), or ONNX Runtime's attention fusions."""
    form = FUSED_FORMS.get(node.op_type)
    return (form is not None and op in form[0] and node.op_type != op) or node.op_type in ATTENTION_FUSIONS

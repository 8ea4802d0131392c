"""A probe whose module the deployed file computes as one fused normalisation's output, mapped onto it (issue 116).

ONNX Runtime GenAI's builder writes a norm as one fused op (`SimplifiedLayerNormalization`,
`SkipSimplifiedLayerNormalization`, `LayerNormalization`, `GatedRMSNorm` …) and names it after the scope it finds
fit, not always the module's: Qwen3.5's gated norm (`linear_attn.norm`, RMSNorm(x) · silu(z)) is its
`/model/layers.0/linear_attn/GatedRMSNorm`, no node carries the module's scope, and the structure search stops at the
delta rule before it (a MatMul of ours with no counterpart). The op's output is the module's output — not something
computed inside the op (`inside_fused.py`) — so the probe maps onto it.

Between the nearest probes both graphs hold (before and after it, as `inside_fused` finds them), the probe is mapped
onto output 0 of the one fused norm of the file's part
- whose unfused form (`graph_diff.FUSED_FORMS`) writes our module's last ops: walking back from our tensor over ops
  of that form reaches its signature (the ReduceMean of the mean of squares), or a norm op of our own;
- whose output reaches the same probes after it as ours does, and is reached from none but those before ours;
- of our tensor's element type and of the module's values: where the file writes them in another shape (the builder's
  gated norm gives [B, S, heads · 16] where the module gives [B · S · heads, 16]), the probe reads the output
  reshaped to the module's shape (`fused_parts.with_views`), the norm's axis whole inside the file's last axis.
Two such ops in one part (q_norm and k_norm between the same probes) leave the probe as it was.
"""

from __future__ import annotations

import math

import onnx

from cp_debug.probes.graph_diff import FUSED_FORMS
from cp_debug.probes.inside_fused import NOT_FOUND, Flow, around_lost

# the fused normalisations: those whose unfused form is a norm's (its signature the mean of squares)
NORM_FUSIONS = frozenset(op for op, (_, sign) in FUSED_FORMS.items() if "ReduceMean" in sign)


def fused_outputs(ours: onnx.ModelProto, foreign: onnx.ModelProto, our_tensors: dict[str, str], trace,
                  tensors: dict[str, str], op_types: dict[str, str], how: dict[str, str], unmapped: dict[str, str],
                  index: dict[str, int], types) -> dict[str, tuple]:
    """Each probe "not found in the deployed graph" (`unmapped`) whose module the file computes as one fused norm's
    output → that output (`tensors`, `op_types`: the op's type, `how`: "structure", `index`), or a view of it in the
    module's shape; returns the views to add to the file (`fused_parts.with_views`). `our_tensors`: cp_debug's own
    export's probe tensors; `trace`: the modules' shapes; `types(model)`: a graph's types."""
    from cp_debug.probes.naming import static_shapes

    lost = [q for q, why in unmapped.items() if why.startswith(NOT_FOUND) and q in our_tensors]
    norms = [j for j, n in enumerate(foreign.graph.node) if n.op_type in NORM_FUSIONS]
    views: dict[str, tuple] = {}
    if not lost or not norms:
        return views
    a, b = Flow(ours), Flow(foreign)
    mine, shapes = types(ours), static_shapes(foreign, types(foreign))
    for q, t, held, before, after in around_lost(a, b, lost, our_tensors, tensors):
        theirs, ahead, behind = set(held.values()), {held[x] for x in after}, {held[x] for x in before}
        fits = [j for j in sorted(b.between(behind, ahead) & set(norms))
                if _written_unfused(a, t, foreign.graph.node[j].op_type)
                and (u := foreign.graph.node[j].output[0]) and b.nearest(u, theirs, True) == ahead
                and b.nearest(u, theirs, False) <= behind]
        if len(fits) != 1:
            continue
        node = foreign.graph.node[fits[0]]
        # a norm's output is of its input's shape and type: read there where inference does not know the op
        known = node.output[0] if types(foreign).get(node.output[0]) is not None else node.input[0]
        got = _read_as(node.output[0], shapes.get(known), trace.shapes.get(q), mine.get(t), types(foreign).get(known))
        if got is None:
            continue
        name, view = got
        if view:
            views[name] = view
        tensors[q], op_types[q], how[q], index[name] = name, node.op_type, "structure", fits[0]
        del unmapped[q]
    return views


def _written_unfused(a: Flow, t: str, fused: str) -> bool:
    """Whether our tensor `t` ends the unfused form of `fused`: the ops behind it of that form (walked back while
    they are) hold the form's signature, or a fused norm of our own."""
    ops, sign = FUSED_FORMS[fused]
    seen, todo = set(), [t]
    while todo:
        cur = todo.pop()
        if cur not in a.producer or a.producer[cur][0] in seen:
            continue
        i = a.producer[cur][0]
        op = a.nodes[i].op_type
        if op in sign or op in NORM_FUSIONS:
            return True
        if op in ops:
            seen.add(i)
            todo += [x for x in a.nodes[i].input if x]
    return False


def _read_as(u: str, got: tuple | None, want: tuple | None, mine, theirs) -> tuple[str, tuple | None] | None:
    """The file's tensor `u` (of shape `got`, an axis left open as None) as the module's output of shape `want`:
    (u, None) where the shapes agree, (a view's name, its Reshape) where the module's values are `u`'s in another
    shape — the same count, the module's last axis (the norm's) whole inside the file's last; else None. Both
    tensors' element types (`mine`, `theirs`) must agree."""
    if mine is None or theirs is None or mine.tensor_type.elem_type != theirs.tensor_type.elem_type:
        return None
    if got is None or not want or None in want:
        return None
    if len(got) == len(want) and all(x is None or x == y for x, y in zip(got, want)):
        return u, None
    last, count = got[-1], math.prod(int(d) for d in want)
    if last is None or last % int(want[-1]) or count % last:
        return None
    if None not in got and math.prod(got) != count:
        return None
    name = f"{u}::as{list(want)}"
    return name, ("Reshape", u, tuple(int(d) for d in want))

"""Fused projections, matched by computation (issue 116): a deployed file that computes several of the model's
projections in one MatMul, or one of them in several.

ONNX Runtime GenAI's model builder writes an attention's q, k and v projections as one `qkv_proj` MatMul (or
MatMulNBits) of the three weights side by side, [K, q + k + v] (every model type it builds); a model whose own
module is fused where the file splits it (Phi-3's `gate_up_proj`, which the builder writes as `gate_proj` and
`up_proj`) is the mirror case. No tensor of the file holds q alone, so the structural alignment
(`foreign.align_anchors`) leaves those projections unpaired and their probes missing.

`fused_views` pairs them by their weights' values: our MatMuls that read one tensor, against one deployed MatMul
fed from the same place whose weight has their columns side by side (or the mirror), each block's correlation with
our weight above 0.9 (the blocks' order tried, the first that fits every block taken; a MatMulNBits weight
dequantized with the file's own numbers, `precision/nbits.py`). A probe of ours then reads a view added to the
deployed file (`with_views`): a Slice of the fused output's last axis (q: its first q columns), or the Concat of the
split outputs; the chain from the projection to the probe (a bias Add, a Cast) followed as any other, element-wise
only. Nothing is paired where no order fits: two tensors that do not correspond are never compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations
from typing import Callable

import onnx

MIN_CORRELATION = 0.9
MAX_PARTS = 4  # blocks tried in every order: 24 orders at most
# ops between a projection and its probe that keep the last axis's columns where they are
_ELEMENTWISE = frozenset({"Add", "Mul", "Cast", "Identity", "QuantizeLinear", "DequantizeLinear"})


@dataclass(frozen=True)
class FusedViews:
    """Our tensor → the view's name in the deployed file; each view: ("Slice", source, start, stop) or
    ("Concat", sources…)."""

    tensors: dict[str, str] = field(default_factory=dict)
    views: dict[str, tuple] = field(default_factory=dict)


def fused_views(a, b, pair: dict[int, int], ours: onnx.ModelProto, foreign: onnx.ModelProto, wanted: list[str],
                follow: Callable) -> FusedViews:
    """Views for our tensors `wanted` (those the structure left unmatched) computed from a fused projection: `a`,
    `b` the graphs (`foreign._Graph`, ours and the deployed one), `pair` their anchors' pairs, `follow` the chain
    walk (`foreign._follow`)."""
    parts, joins = _parts(a, b, pair, ours, foreign)
    if not parts and not joins:
        return FusedViews()
    out = FusedViews()
    splits = _split_parts(a, b, joins) if joins else {}
    for t in wanted:
        found = _anchor_of(a, t)
        if found is None:
            continue
        i, ops = found
        if i in parts and ops <= _ELEMENTWISE:
            j, start, stop = parts[i]
            got = follow(a, b, {**pair, i: j}, t)
            if isinstance(got, str):
                name = f"{got}::cols[{start}:{stop}]"
                out.tensors[t] = name
                out.views[name] = ("Slice", got, start, stop)
        elif i in joins and not ops:  # the fused module's own output: the split outputs side by side
            outs = tuple(b.model.graph.node[j].output[0] for j in joins[i])
            name = "::concat(" + ",".join(outs) + ")"
            out.tensors[t] = name
            out.views[name] = ("Concat", *outs)
        elif i in joins and "Split" in ops and isinstance(got := follow(a, b, pair, t, splits), str):
            out.tensors[t] = got  # past our fused output's Split (the builder's qkv_proj): the file's own parts
        elif i in joins and ops == {"GroupQueryAttention"} and (got := _packed_attention(a, b, joins[i], t)):
            out.tensors[t] = got
    return out


def _packed_attention(a, b, parts: tuple[int, ...], t: str) -> str | None:
    """The deployed GroupQueryAttention output for ours `t` where ours reads the fused projection packed (q, k and v
    side by side in its query, key and value left empty: the builder's packed form) and the deployed one reads the
    parts apart, in their order, as query, key and value; None otherwise."""
    node = a.model.graph.node[a.producer[t][0]]
    outs = [b.model.graph.node[j].output[0] for j in parts]
    if len(outs) != 3 or any(x for x in list(node.input)[1:3]) or t != node.output[0]:
        return None
    nodes = b.model.graph.node
    found = [j for j, slot in b.consumers.get(outs[0], []) if slot == 0
             and nodes[j].op_type == "GroupQueryAttention" and list(nodes[j].input[:3]) == outs]
    return nodes[found[0]].output[0] if len(found) == 1 else None


def _split_parts(a, b, joins: dict[int, tuple[int, ...]]) -> dict[str, str]:
    """Our Split outputs of a fused projection's output whose sizes are the deployed parts' widths, along the last
    axis (the builder's `qkv_proj/Split` where the file computes q, k and v apart: GPTQ's act-order projections,
    each with its own g_idx) → the deployed part's output."""
    import numpy as np

    from cp_debug.probes.constant_values import _small

    out = {}
    for node in a.model.graph.node:
        made = a.producer.get(node.input[0]) if node.op_type == "Split" and node.input else None
        if made is None or made[0] not in joins or len(node.output) != len(joins[made[0]]):
            continue
        attrs = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        sizes = attrs.get("split", _small(a, node).get(1))  # opset 13's input (an initializer or a Constant)
        widths = [_dims(b, j)[1] for j in joins[made[0]]]
        if attrs.get("axis", 0) == -1 and sizes is not None and np.asarray(sizes).tolist() == widths:
            out.update({t: b.model.graph.node[j].output[0] for t, j in zip(node.output, joins[made[0]])})
    return out


def _anchor_of(a, t: str) -> tuple[int, frozenset] | None:
    """The anchor our tensor `t` is computed from through a chain (its first computed input each step), and the
    chain's ops; None where it starts at a graph input or is longer than 8 ops."""
    ops = set()
    for _ in range(8):
        made = a.producer.get(t)
        if made is None:
            return None
        i = made[0]
        node = a.model.graph.node[i]
        if i in a._anchor_set:
            return i, frozenset(ops)
        ops.add(node.op_type)
        t = next((x for x in node.input if a.computed(x)), "")
    return None


def _parts(a, b, pair, ours, foreign) -> tuple[dict[int, tuple[int, int, int]], dict[int, tuple[int, ...]]]:
    """(our anchor → (the deployed fused anchor, first column, end column)) and (our fused anchor → the deployed
    anchors that split it, in column order), each verified on the weights."""
    from cp_debug.probes.block_forms import _fed_from

    ua = _unpaired_matmuls(a, set(pair))
    ub = _unpaired_matmuls(b, set(pair.values()))
    if not ua or not ub:
        return {}, {}
    weights = _Weights(a, b, ours, foreign)
    fed = _fed_from(a, b, pair)
    parts: dict[int, tuple[int, int, int]] = {}
    joins: dict[int, tuple[int, ...]] = {}
    for mine, theirs, many_ours in ((_groups(a, ua), ub, True), (_groups(b, ub), ua, False)):
        side, whole = (a, b) if many_ours else (b, a)
        for group in mine:
            width = sum(_dims(side, x)[1] for x in group)
            for other in theirs:
                if _dims(whole, other) != (_dims(side, group[0])[0], width):
                    continue
                if not all(fed(i, other) if many_ours else fed(other, i) for i in group):
                    continue
                order = weights.order(group, other, many_ours)
                if order is None:
                    continue
                start = 0
                for x in order:
                    n = _dims(side, x)[1]
                    if many_ours:
                        parts[x] = (other, start, start + n)
                    start += n
                if not many_ours:
                    joins[other] = tuple(order)
                break
    return parts, joins


def _unpaired_matmuls(g, taken: set[int]) -> list[int]:
    """The MatMul anchors not in `taken` whose weight is a [K, N] constant."""
    nodes = g.model.graph.node
    return [i for i in g.anchors if i not in taken and nodes[i].op_type == "MatMul" and len(nodes[i].input) > 1
            and len(g.constants.get(nodes[i].input[1], ())) == 2]


def _dims(g, i: int) -> tuple[int, int]:
    return tuple(int(d) for d in g.constants[g.model.graph.node[i].input[1]])


def _groups(g, anchors: list[int]) -> list[tuple[int, ...]]:
    """The anchors reading one input tensor with one K, two to MAX_PARTS of them."""
    by: dict[tuple, list[int]] = {}
    for i in anchors:
        by.setdefault((g.model.graph.node[i].input[0], _dims(g, i)[0]), []).append(i)
    return [tuple(v) for v in by.values() if 2 <= len(v) <= MAX_PARTS]


class _Weights:
    """Each side's float weights (a MatMulNBits one dequantized), read once, and the column order that fits."""

    def __init__(self, a, b, ours: onnx.ModelProto, foreign: onnx.ModelProto):
        self.a, self.b = a, b
        self.held = {
            id(a): {i.name: i for i in ours.graph.initializer},
            id(b): {i.name: i for i in foreign.graph.initializer},
        }
        self.nbits = {n.input[1] + "::float": n for n in foreign.graph.node
                      if n.op_type == "MatMulNBits" and len(n.input) > 1}
        self.memo: dict[tuple[int, int], object] = {}

    def value(self, g, i: int):
        key = (id(g), i)
        if key not in self.memo:
            from cp_debug.precision.nbits import array, dequantize

            name = g.model.graph.node[i].input[1]
            held = self.held[id(g)]
            if g is self.b and name in self.nbits:
                w = dequantize(self.nbits[name], self.held[id(g)])
            else:
                w = array(held[name]) if name in held else None
            self.memo[key] = w
        return self.memo[key]

    def order(self, group: tuple[int, ...], other: int, many_ours: bool) -> tuple[int, ...] | None:
        """`group`'s anchors in the column order of `other`'s weight where every block correlates above
        MIN_CORRELATION with its own weight; None where no order fits or a weight is not readable."""
        import numpy as np

        from cp_debug.probes.block_forms import _unit

        side, whole = (self.a, self.b) if many_ours else (self.b, self.a)
        big = self.value(whole, other)
        blocks = {i: self.value(side, i) for i in group}
        if big is None or any(w is None for w in blocks.values()):
            return None
        for order in permutations(group):
            start, fits = 0, True
            for i in order:
                w = np.asarray(blocks[i])
                part = np.asarray(big)[:, start:start + w.shape[1]]
                start += w.shape[1]
                x, y = _unit(w), _unit(part)
                if x is None or y is None or x[0] != y[0] or float(np.dot(x[1], y[1])) <= MIN_CORRELATION:
                    fits = False
                    break
            if fits:
                return order
        return None


def with_views(model: onnx.ModelProto, views: dict[str, tuple]) -> onnx.ModelProto:
    """`model` (a copy) with a node writing each view: a Slice of its source's last axis, a Concat of its sources
    along it, or a Reshape of its source to a module's shape. The views are read by the probes only; nothing of the
    file's own computation changes."""
    if not views:
        return model
    import numpy as np
    from onnx import helper, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    for k, (name, view) in enumerate(sorted(views.items())):
        if view[0] == "Reshape":  # ("Reshape", source, shape[, perm]): a Transpose by perm after it
            shape, out = f"{name}::shape", name if len(view) < 4 else f"{name}::reshaped"
            graph.initializer.append(numpy_helper.from_array(np.array(view[2], np.int64), shape))
            graph.node.append(helper.make_node("Reshape", [view[1], shape], [out], name=f"cp_debug_view_{k}"))
            if len(view) > 3:
                graph.node.append(helper.make_node("Transpose", [out], [name], name=f"cp_debug_view_{k}_t",
                                                   perm=list(view[3])))
        elif view[0] == "Slice":
            _, src, start, stop = view
            consts = {f"{name}::{what}": np.array([v], np.int64) for what, v in
                      (("starts", start), ("ends", stop), ("axes", -1))}
            graph.initializer.extend(numpy_helper.from_array(v, n) for n, v in consts.items())
            graph.node.append(helper.make_node("Slice", [src, *consts], [name], name=f"cp_debug_view_{k}"))
        else:
            graph.node.append(helper.make_node("Concat", list(view[1:]), [name], name=f"cp_debug_view_{k}", axis=-1))
    return copy


def reshaped_views(foreign: onnx.ModelProto, trace, wanted: list[str], scopes: list[tuple[str, ...]],
                   shapes: dict[str, tuple | None]) -> tuple[dict[str, str], dict[str, tuple]]:
    """Probes `wanted` whose module's scope in `foreign` (`scopes`: each node's chain, `naming.node_scopes`) ends in a
    Reshape writing its values in another shape: Qwen3's q_norm, whose module gives [1, S, heads, 16] where the
    builder's `…/attn/q_norm/Reshape_2` writes [1, S, 64] — the same values in the same order (a Reshape merges or
    splits neighbouring axes only), the leading axes the same and the rest of one size. Returns (probe → view name,
    view → ("Reshape", tensor, shape)): the probe reads the file's tensor reshaped to the module's shape."""
    import math

    leaving: dict[str, str] = {}  # module -> the last Reshape output of its scope read outside it
    readers = {}
    for k, node in enumerate(foreign.graph.node):
        for t in node.input:
            readers.setdefault(t, set()).add(k)
    outputs = {o.name for o in foreign.graph.output}
    for k, node in enumerate(foreign.graph.node):
        q = scopes[k][-1] if scopes[k] else None
        if q in wanted and node.op_type == "Reshape" and node.output and (
                node.output[0] in outputs or any(not scopes[r] or scopes[r][-1] != q
                                                 for r in readers.get(node.output[0], ()))):
            leaving[q] = node.output[0]
    tensors, views = {}, {}
    for q, t in leaving.items():
        want, got = trace.shapes.get(q), shapes.get(t)
        if not want or not got or None in want or len(want) == len(got):
            continue
        # the leading axes alike (an axis inference left open taken as alike), the rest known and of one size
        lead = next((i for i, (x, y) in enumerate(zip(want, got)) if y is not None and x != y),
                    min(len(want), len(got)))
        name = f"{t}::as{list(want)}"
        if _heads_first(want, got):  # HunYuan's query_layernorm: [1, heads, S, 16] of the builder's [1, S, 64]
            b, h, n, d = (int(x) for x in want)
            tensors[q], views[name] = name, ("Reshape", t, (b, n, h, d), (0, 2, 1, 3))
            continue
        if lead == 0 or None in got[lead:] or math.prod(want[lead:]) != math.prod(got[lead:]):
            continue
        tensors[q], views[name] = name, ("Reshape", t, tuple(int(d) for d in want))
    return tensors, views


def _heads_first(want: tuple, got: tuple) -> bool:
    """Whether a module's [B, heads, S, D] is the file's [B, S, heads·D] with its two middle axes swapped (a norm
    of the heads applied after the transpose to heads-first, which the builder writes before it; an axis inference
    left open taken as alike)."""
    return (len(want) == 4 and len(got) == 3 and None not in want and got[0] in (None, want[0])
            and got[1] in (None, want[2]) and got[2] == want[1] * want[3] and want[1] != want[2])


def read_reshaped(foreign: onnx.ModelProto, trace, scopes, types: dict, tensors: dict, how: dict, op_types: dict,
                  unmapped: dict, index: dict) -> dict[str, tuple]:
    """`reshaped_views` for the probes still unmapped, adopted into the map (`foreign.map_foreign`'s tables: found by
    scope, the view's node index its source's); returns the views to add to the file."""
    from cp_debug.probes.naming import static_shapes

    found, views = reshaped_views(foreign, trace, list(unmapped), scopes, static_shapes(foreign, types))
    for q, name in found.items():
        tensors[q], how[q], op_types[q] = name, "scope", "Reshape"
        unmapped.pop(q, None)
        index[name] = index.get(views[name][1], -1)
    return views

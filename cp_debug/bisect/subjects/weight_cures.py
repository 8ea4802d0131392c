"""A flipped token that a quantized weight causes, not a runtime setting (issue 116): the node whose weight, left out
of the quantization, alone gives the reference's tokens back — `nodes_to_exclude` in the builder's or the
quantizer's terms, verified on the decode.

A 4-bit block holding a massive channel's weight rounds the rest of its block (the builder's
`op_types_to_quantize=MatMul/Gather`, or tied embeddings, which quantize the embedding table:
`GatherBlockQuantized`); HQQ's float zero points leave a zero weight off zero, which a massive activation
multiplies (lm_head). No accuracy_level cures either. Each quantized node (MatMulNBits, GatherBlockQuantized) is
matched to the reference's float weight of its shape that correlates best with its dequantized one (above 0.9; a
[N, K] PyTorch Linear weight transposed; a projection the reference computes fused, q|k|v or gate|up, matched to
its column block); the decode is run with every matched node in float (it must give the
tokens back, else nothing is said), then halved down to the nodes whose float weight alone does (`greedy.halved`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from cp_debug.bisect.subjects.decoder_feed import DecoderInputs
    from cp_debug.bisect.subjects.greedy import Decode

MATCH = 0.9  # the least correlation of a dequantized weight with the reference's it is matched to
MAX_DECODES = 40  # the search's decodes at most (each a session of a float copy of the file): none said past it


class _Spent(Exception):
    """The search ran MAX_DECODES decodes without an answer."""


def gather_weight(node, inits: dict, shared: "dict | None" = None) -> "np.ndarray | None":
    """The float table [rows, cols] a GatherBlockQuantized (gather_axis 0, blocks along the last axis) stands for:
    (q − zp) · scale, the zero point the type's middle level where none is given (0 for INT4); None otherwise.
    `shared`: a Reshape's output -> the initializer it reshapes (tied embeddings: the builder gathers from lm_head's
    packed MatMulNBits weight reshaped to [rows, bytes])."""
    shared = shared or {}
    from onnx import helper

    from cp_debug.precision.nbits import FOUR_BITS, _unpack, array

    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    names = list(node.input) + [""] * 4
    data = inits.get(names[0]) or shared.get(names[0])
    if a.get("gather_axis", 0) != 0 or data is None or names[2] not in inits:
        return None
    t, scale = data, array(inits[names[2]])
    q = array(t)
    if q is not None and names[0] in shared:  # lm_head's packed [N, blocks, bytes], the rows of the table
        q = q.reshape(q.shape[0], -1)
    if q is None or scale is None or len(q.shape) != 2 or scale.ndim != 2:
        return None
    bits, block = int(a.get("bits", 4)), int(a.get("block_size", 128))
    packed = t.data_type not in FOUR_BITS and bits == 4
    q = _unpack(q.astype(np.uint8), 4) if packed else q.astype(np.float32)
    q = q.astype(np.float32)
    signed = t.data_type == 22  # onnx.TensorProto.INT4
    if names[3] and names[3] in inits:
        z = array(inits[names[3]])
        if z is None:
            return None
        zp = (_unpack(z.astype(np.uint8), 4) if packed else z).astype(np.float32)
    else:
        zp = np.zeros_like(scale, np.float32) if signed else np.full(scale.shape, 2.0 ** (bits - 1), np.float32)
    cols = q.shape[1]
    zp, scale = (np.repeat(x[:, :-(-cols // block)], block, axis=1)[:, :cols] for x in (zp, scale.astype(np.float32)))
    return (q - zp) * scale if q.shape == scale.shape else None


def quantized_weights(model: "onnx.ModelProto") -> dict[str, np.ndarray]:
    """Each MatMulNBits ([K, N]) and GatherBlockQuantized ([rows, cols]) node's float weight, by node name."""
    from cp_debug.precision.nbits import dequantize

    inits = {i.name: i for i in model.graph.initializer}
    shared = {n.output[0]: inits[n.input[0]] for n in model.graph.node
              if n.op_type == "Reshape" and n.input and n.input[0] in inits}
    out = {}
    for n in model.graph.node:
        w = dequantize(n, inits) if n.op_type == "MatMulNBits" else gather_weight(n, inits, shared) \
            if n.op_type == "GatherBlockQuantized" else None
        if w is not None and n.name:
            out[n.name] = w
    return out


def expert_weights(model: "onnx.ModelProto") -> dict[str, dict[int, np.ndarray]]:
    """Each QMoE node's experts dequantized (`qmoe.qmoe_weights`: its packed 4- / 8-bit weights, scales and zero points
    as onnxruntime's contrib op reads them), by node name: input index → float [E, N, K]."""
    from cp_debug.precision.qmoe import qmoe_dequantized, qmoe_nodes

    inits = {i.name: i for i in model.graph.initializer}
    return {n.name: w for n in qmoe_nodes(model) if n.name and (w := qmoe_dequantized(n, inits))}


def matched_experts(model: "onnx.ModelProto", reference: Iterable[np.ndarray]) -> dict[str, dict[int, np.ndarray]]:
    """The QMoE nodes whose every expert weight is matched to a 3-D reference weight [E, N, K] (or [E, K, N], a
    PyTorch model's experts input-major) correlating above MATCH: node name → input index → the float [E, N, K]."""
    ref3 = [np.asarray(w, np.float32) for w in reference if np.ndim(w) == 3]
    out = {}
    for name, weights in expert_weights(model).items():
        found = {}
        for i, q in weights.items():
            tries = [w for w in ref3 if w.shape == q.shape] + \
                [w.transpose(0, 2, 1) for w in ref3 if w.shape == (q.shape[0], q.shape[2], q.shape[1])]
            best = max(tries, key=lambda w: _corr(q, w), default=None)
            if best is not None and _corr(q, best) > MATCH:
                found[i] = np.ascontiguousarray(best)
        if found and len(found) == len(weights):
            out[name] = found
    return out


def matched(model: "onnx.ModelProto", reference: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """The quantized nodes of `model` matched to the `reference` weight (or its transpose) of their shape whose
    values correlate best with their dequantized ones (above MATCH): node name -> the reference's float weight; a QMoE
    node -> its experts' float weights by input index (`matched_experts`)."""
    by_shape: dict[tuple, list[np.ndarray]] = {}
    reference = list(reference)
    for w in reference:
        w = np.asarray(w, np.float32)
        if w.ndim == 2:
            by_shape.setdefault(w.shape, []).append(w)
            if w.shape[0] != w.shape[1]:
                by_shape.setdefault(w.shape[::-1], []).append(w.T)
    out = {}
    for name, q in quantized_weights(model).items():
        best, score = None, MATCH
        for w in [*by_shape.get(q.shape, ()), *_column_parts(by_shape, q.shape)]:
            c = _corr(q, w)
            if c > score:
                best, score = w, c
        if best is not None:
            out[name] = best
    return {**out, **matched_experts(model, reference)}


def _column_parts(by_shape: dict, shape: tuple) -> list[np.ndarray]:
    """The column blocks [K, N] of the reference's wider weights [K, M] that a projection computed apart may be a
    part of (a fused q|k|v or gate|up weight, the act-order file's q, k and v apart: s13), at offsets that are
    multiples of gcd(N, M − N) (q at 0, k after q, v after both; gate and up at 0 and M / 2)."""
    k, n = shape
    parts = []
    for (rows, m), ws in by_shape.items():
        if rows != k or m <= n:
            continue
        step = math.gcd(n, m - n)
        parts += [w[:, a:a + n] for w in ws for a in range(0, m - n + 1, step)]
    return parts


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
    d = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(np.dot(x, y)) / d if d > 0 else 0.0


def with_float(model: "onnx.ModelProto", weights: dict[str, np.ndarray]) -> "onnx.ModelProto":
    """A copy of `model` whose named quantized nodes compute in float with the given weights: MatMulNBits as MatMul
    (+ Add of its bias), GatherBlockQuantized as Gather, QMoE as MoE (its experts' weights by input index)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    nodes = []
    for n in m.graph.node:
        if n.name not in weights:
            nodes.append(n)
            continue
        if n.op_type == "QMoE":  # a mixture of experts: its experts in float, the fused MoE
            nodes.append(_float_moe(m, n, weights[n.name]))
            continue
        w = n.name + "::float_weight"
        m.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weights[n.name], np.float32), w))
        y = n.output[0]
        if n.op_type == "GatherBlockQuantized":
            nodes.append(helper.make_node("Gather", [w, n.input[1]], [y], name=n.name))
        elif len(n.input) > 5 and n.input[5]:
            nodes += [helper.make_node("MatMul", [n.input[0], w], [y + "::mm"], name=n.name),
                      helper.make_node("Add", [y + "::mm", n.input[5]], [y], name=n.name + "::bias")]
        else:
            nodes.append(helper.make_node("MatMul", [n.input[0], w], [y], name=n.name))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    used = {x for n in m.graph.node for x in n.input}
    kept = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    return m


def _float_moe(m: "onnx.ModelProto", n, weights: dict[int, np.ndarray]):
    """A QMoE node as the float MoE it stands for (com.microsoft: input, router probs, then each of fc1 / fc2 / fc3
    as weight [E, N, K] and bias), its float expert weights added to `m`, its attributes kept but the
    quantization's."""
    from onnx import helper, numpy_helper

    from cp_debug.precision.qmoe import QMOE_WEIGHTS

    ins = list(n.input) + [""] * 14
    inputs = ins[:2]
    for w, _, _ in QMOE_WEIGHTS:
        name = f"{n.name}::float_experts_{w}" if w in weights else ""
        if name:
            m.graph.initializer.append(numpy_helper.from_array(weights[w].astype(np.float32), name))
        inputs += [name, ins[w + 2] if name else ""]
    while inputs and not inputs[-1]:
        inputs.pop()
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute
             if a.name not in ("expert_weight_bits", "block_size")}
    return helper.make_node("MoE", inputs, list(n.output), name=n.name, domain=n.domain, **attrs)


@dataclass(frozen=True)
class WeightCure:
    """The quantized nodes matched to the reference's weights, those whose float weight alone gives its tokens back,
    and, where none does, a 1-minimal set that together does (`together`: float weights and level-1 nodes);
    `builder`: the file is the model builder's (its `nodes_to_exclude` takes the MatMul's name)."""

    nodes: tuple[str, ...]
    curing: tuple[str, ...]
    builder: bool
    together: tuple[tuple[str, str], ...] = ()
    every: bool = False  # each node was tried alone (else `curing` is what the halving found: `_search`)
    experts: tuple[str, ...] = ()  # the QMoE nodes among `nodes` (their experts' 3-D weights matched: s14)

    @property
    def whole_file(self) -> bool:
        """No file-wide setting: weights one by one (`generation.DecodeCure`)."""
        return False

    def line(self) -> str:
        from cp_debug.bisect.subjects.greedy import _builder_name, prequantized

        floats = self.curing or tuple(n for k, n in self.together if k == FLOAT)
        levels = [n for k, n in self.together if k == LEVEL]
        moe = [n for n in floats if n in self.experts]  # no nodes_to_exclude entry for a QMoE was verified
        floats = [n for n in floats if n not in self.experts]
        names = [_builder_name(n) for n in floats]
        both = names + [_builder_name(n) for n in levels]
        if self.builder and any(prequantized(n) for n in floats):  # a GPTQ / AWQ checkpoint's own weight
            how = (f"{', '.join(floats)} is the pre-quantized checkpoint's weight, which nodes_to_exclude does not "
                   f"reach: quantize the checkpoint without that projection (GPTQ, AWQ: its modules not converted)"
                   + (" and --extra_options accuracy_level=1" if levels else ""))
        elif self.builder:
            how = f"--extra_options nodes_to_exclude={','.join(names)}"
            how += (f" accuracy_level=1 (or nodes_to_exclude={','.join(both)})" if levels else "")
        else:
            how = (f"MatMulNBitsQuantizer(..., accuracy_level=1, nodes_to_exclude={names!r}) (or nodes_to_exclude="
                   f"{both!r})" if levels else f"MatMulNBitsQuantizer(..., nodes_to_exclude={names!r})")
        if any("Gather" in n for n in floats) and self.builder:
            how += " (the embeddings: or op_types_to_quantize=MatMul)"
        terms = f"in the {'builder' if self.builder else 'quantizer'}'s terms {how}" if names or levels else ""
        if moe:  # a QMoE's experts: its MoE in float
            terms = "; ".join(filter(None, [terms, f"the experts of {', '.join(moe)} in float (a float MoE in its "
                                            "place: no nodes_to_exclude entry for a QMoE was verified)"]))
        floats = [*floats, *moe]
        if self.together:
            return (f"no single weight or setting: {', '.join(floats)} with the reference's float weight"
                    + (f" and accuracy_level=1 on {', '.join(levels)}" if levels else "")
                    + f" give its tokens back together, no one of them alone (of {len(self.nodes)} quantized "
                    f"weights); {terms}")
        of = f"of {len(self.nodes)} quantized weights" + (
            ", each tried alone" if self.every else "; found by halving, which passes over a weight that cures alone "
            "but not beside the other float weights of its half")
        if len(self.curing) > 1:
            return (f"each of {', '.join(self.curing)} alone with the reference's float weight gives its tokens back "
                    f"({of}): a thin margin, the weights' rounding together")
        return f"{self.curing[0]} alone with the reference's float weight gives its tokens back ({of}); {terms}"


FLOAT, LEVEL = "float", "level"


def weight_cures(model: "onnx.ModelProto", reference: Sequence[np.ndarray], dec: "DecoderInputs", ids: np.ndarray,
                 ref: "Decode", builder: bool) -> WeightCure | None:
    """The quantized nodes whose float weight alone gives `ref`'s tokens back (see the module); where none does, a
    1-minimal set of float weights and level-1 nodes that together does (a massive channel's embedding block and
    lm_head's INT8 activations: neither alone); None where no node is matched, all of them in float (and every
    node at level 1) do not give the tokens back, or the search would take more than MAX_DECODES decodes."""
    from cp_debug.bisect.subjects.greedy import greedy, with_levels

    weights = matched(model, reference)
    if not weights:
        return None
    nodes = tuple(n.name for n in model.graph.node if n.name in weights)

    spent: dict[tuple, bool] = {}  # the decodes run: a set of items tried twice is decoded once

    def cures(items: Sequence) -> bool:
        key = tuple(sorted(items))
        if key in spent:
            return spent[key]
        if len(spent) >= MAX_DECODES:
            raise _Spent
        spent[key] = _decoded(items)
        return spent[key]

    def _decoded(items: Sequence) -> bool:
        chosen = {n: weights[n] for k, n in items if k == FLOAT}
        m = with_float(model, chosen)
        levels = [n for k, n in items if k == LEVEL and n not in chosen]
        m = with_levels(m, levels) if levels else m
        return greedy(m, dec, ids, len(ref.tokens), ref.tokens).tokens == ref.tokens

    try:
        found = _search(model, nodes, cures, builder, lambda: MAX_DECODES - len(spent))
        experts = tuple(n for n in nodes if isinstance(weights[n], dict))
        return replace(found, experts=experts) if found is not None and experts else found
    except _Spent:  # a large file whose flip many weights share: no answer rather than minutes of sessions
        return None


def _search(model: "onnx.ModelProto", nodes: tuple[str, ...], cures, builder: bool, left=lambda: 0
            ) -> WeightCure | None:
    """The halving's singles, then each node it did not name tried alone where the decodes `left` allow (a thin
    margin is no monotone test: the act-order Llama's v_proj cures alone, yet a half holding it beside other float
    weights may not), so that `every` curing node is said; else the halving's, said as such."""
    from cp_debug.bisect.subjects.greedy import halved, level4_nodes

    floats = [(FLOAT, n) for n in nodes]
    items = floats + [(LEVEL, n) for n in level4_nodes(model)]
    if not cures(items):
        return None
    singles = halved(floats, lambda group: cures(group)) if cures(floats) else ()
    if singles:
        rest = [f for f in floats if f not in singles]
        every = len(rest) <= left()  # a decode each at most (those the halving tried alone are remembered)
        found = set(singles) | ({f for f in rest if cures([f])} if every else set())
        return WeightCure(nodes, tuple(n for f in floats if f in found for _, n in [f]), builder, every=every)
    chosen = minimal(items, cures)
    levels = set(level4_nodes(model))
    for k, (kind, node) in enumerate(chosen):  # a setting rather than a weight where it does as well (the
        if kind == FLOAT and node in levels:  # builder's accuracy_level, not the weight left unquantized)
            trial = [*chosen[:k], (LEVEL, node), *chosen[k + 1:]]
            if cures(trial):
                chosen = trial
    return WeightCure(nodes, (), builder, tuple(chosen))


def minimal(items: Sequence, cures) -> list:
    """A 1-minimal part of `items` (all of which `cures`) that still cures: chunks of halving size dropped, front
    first, while the rest cures (ddmin's complement steps)."""
    keep = list(items)
    chunk = max(1, len(keep) // 2)
    while True:
        i = 0
        while i < len(keep):
            trial = keep[:i] + keep[i + chunk:]
            if trial and cures(trial):
                keep = trial
            else:
                i += chunk
        if chunk == 1:
            return keep
        chunk //= 2


def float_arrays(model: "onnx.ModelProto") -> list[np.ndarray]:
    """A reference ONNX file's float 2-D weights and 3-D ones (a MoE's experts), its initializers' values; those not
    read in are left out."""
    from cp_debug.precision.nbits import array

    out = []
    for t in model.graph.initializer:
        if t.data_type in (1, 10, 16) and len(t.dims) in (2, 3):  # FLOAT, FLOAT16, BFLOAT16
            w = array(t)
            if w is not None:
                out.append(w)
    return out

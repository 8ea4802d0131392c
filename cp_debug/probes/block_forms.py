"""Weight-only block formats read as the float op they stand for (issue 116), for `quantized_forms._Rewrite`:
MatMulNBits (com.microsoft: ONNX Runtime GenAI's model builder, `MatMulNBitsQuantizer`; 4 or 8 bits, block-wise
scales, zero points or none, any accuracy_level) as MatMul of a float weight of [K, N], its output the MatMul's name;
GatherBlockQuantized as the embedding's Gather; QMoE as MoE. The weights are stand-ins of the float shape (the view
is never run).
Each function takes the rewrite (`rw`: its initializers, names, the nodes it puts where a node stood)."""

from __future__ import annotations

import onnx
from onnx import helper


def stand_in(name: str, data_type: int, dims) -> onnx.TensorProto:
    """An initializer of `dims` without its values: what the alignment reads of a weight."""
    t = onnx.TensorProto()
    t.name, t.data_type = name, data_type
    t.dims.extend(dims)
    return t


def _stand_in_weight(rw, w: str, dims: list[int]) -> str:
    """A float stand-in constant of `dims` for the packed weight `w` (its unpacked float shape)."""
    name = w + "::float"
    if name not in rw.names:
        rw.names.add(name)
        rw.extra_inits.append(stand_in(name, onnx.TensorProto.FLOAT, dims))
    return name


def nbits(rw, i: int, n: onnx.NodeProto) -> None:
    """MatMulNBits(A, B packed [N, blocks, blob], scales, …, bias at slot 5; attributes K, N) → MatMul(A, W of
    [K, N]) [+ Add(bias)]: the weight-only matmul as the float one it stands for."""
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    k, cols = attrs.get("K"), attrs.get("N")
    if not k or not cols or len(n.input) < 2:
        return
    w = _stand_in_weight(rw, n.input[1], [int(k), int(cols)])
    y = n.output[0]
    if len(n.input) < 6 or not n.input[5]:
        rw.put[i] = [helper.make_node("MatMul", [n.input[0], w], [y], name=n.name or y)]
        return
    inner = y + "::matmul"
    rw.inner.add(inner)
    rw.put[i] = [helper.make_node("MatMul", [n.input[0], w], [inner], name=n.name or y),
                   helper.make_node("Add", [inner, n.input[5]], [y], name=(n.name or y) + "::bias")]


def block_gather(rw, i: int, n: onnx.NodeProto) -> None:
    """GatherBlockQuantized(data [vocab, hidden (packed for 4 bits)], ids, scales, …) → Gather(W [vocab, hidden],
    ids): the embedding it stands for (the hidden size from the scales' blocks × block_size)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    scales = rw.inits.get(n.input[2]) if len(n.input) > 2 else None
    if scales is None or len(scales.dims) != 2 or attrs.get("gather_axis", 0) != 0:
        return  # the table's shape from its scales: [rows, blocks × block_size] (the data may be a Reshape of
    hidden = int(scales.dims[-1]) * int(attrs.get("block_size", 128))  # lm_head's packed weight: tied embeddings)
    w = _stand_in_weight(rw, n.input[0], [int(scales.dims[0]), hidden])
    rw.put[i] = [helper.make_node("Gather", [w, n.input[1]], [n.output[0]], name=n.name or n.output[0])]


def qmoe(rw, i: int, n: onnx.NodeProto) -> None:
    """QMoE(input, router probs, fc1 packed [E, N, K·bits/8], fc1 scales, fc1 bias, fc2 …, fc3 …; attribute
    expert_weight_bits) → MoE(input, router probs, fc1 [E, N, K], fc1 bias, fc2 …, fc3 …): the builder's quantized
    mixture of experts (GPT-OSS at `-p int4`) as the float one its FP32 file holds, its attributes kept (not the
    quantization's)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    bits = int(attrs.pop("expert_weight_bits", 4))
    attrs.pop("block_size", None)
    ins = list(n.input) + [""] * 11
    inputs = ins[:2]
    for w, bias in ((2, 4), (5, 7), (8, 10)):
        q = rw.inits.get(ins[w])
        if q is None or len(q.dims) != 3:
            inputs += ["", ""]
            continue
        dims = [int(q.dims[0]), int(q.dims[1]), int(q.dims[2]) * 8 // bits]
        inputs += [_stand_in_weight(rw, ins[w], dims), ins[bias]]
    while inputs and not inputs[-1]:
        inputs.pop()
    rw.put[i] = [helper.make_node("MoE", inputs, list(n.output), name=n.name or n.output[0], domain=n.domain,
                                  **attrs)]


BLOCK_FORMS = {"MatMulNBits": nbits, "GatherBlockQuantized": block_gather, "QMoE": qmoe}


def by_weights(a, b, ours: onnx.ModelProto, foreign: onnx.ModelProto, pair: dict[int, int]) -> dict[int, int]:
    """`pair` (anchor of `a`, our float view → anchor of `b`, the foreign one: `foreign.align_anchors`; `ours` and
    `foreign` the models themselves, whose initializers hold the values the views leave out) with the MatMuls its
    structural keys left alike paired by their weights' values: twins of one input and one weight shape (an MLP's gate
    and up projections) whose foreign weight is a MatMulNBits one or a 4-bit DequantizeLinear's, dequantized
    (`precision/nbits.py`) and matched to
    our initializer it correlates with best (above 0.9, no other within 0.1 of it, and each the other's best). Only
    MatMuls read from the same place are scored (`_fed_from`): an LLM's gate and up projections of one layer, not
    every layer's against every other's (24 × 2 of them on each side of a 0.5 B model: 2304 correlations of 4.4 M
    values, minutes, where 96 are needed)."""
    from cp_debug.precision.nbits import dq_weight_nodes

    nbits = {n.input[1] + "::float": n for n in foreign.graph.node if n.op_type == "MatMulNBits" and len(n.input) > 1}
    dq = {n.output[0]: n for n in dq_weight_nodes(foreign)}  # MatMulNBitsQuantizer's QDQ form: blockwise 4-bit DQ
    inits = {i.name: i for i in foreign.graph.initializer}
    # a float file's own weights too (the builder's FP32 Phi-2: its layer 1's q, k and v, and both attentions'
    # dense, each [64, 64] as the other, had no unique structural key; its INT4 file's were paired here)
    floats = {n.input[1] for n in foreign.graph.node if n.op_type == "MatMul" and len(n.input) > 1
              and n.input[1] in inits}
    if not nbits and not dq and not floats:
        return pair
    import numpy as np

    from cp_debug.precision.nbits import array, dequantize_dq

    def theirs(name: str):  # `_unit` of the file's weight: a MatMulNBits one's rows at `_unit`'s stride only
        if name in nbits:
            return _nbits_unit(nbits[name], inits)
        return _unit(dequantize_dq(dq[name], inits)) if name in dq else _unit(array(inits[name]))

    na, nb, taken = a.model.graph.node, b.model.graph.node, set(pair.values())
    held = {i.name: i for i in ours.graph.initializer}
    # each weight as a unit vector, made once as it is read (the weights themselves not kept): (shape, vector)
    wa = {i: _unit(array(held[na[i].input[1]])) for i in a.anchors
          if i not in pair and na[i].op_type == "MatMul" and na[i].input[1] in held}
    wb = {j: theirs(nb[j].input[1]) for j in b.anchors
          if j not in taken and nb[j].op_type == "MatMul" and {nb[j].input[1]} & (nbits.keys() | dq.keys() | floats)}
    wa = {i: x for i, x in wa.items() if x is not None}
    wb = {j: y for j, y in wb.items() if y is not None}
    fed = _fed_from(a, b, pair)
    alike = [(i, j) for i, x in wa.items() for j, y in wb.items()
             if x[0] == y[0] and a.signature(i) == b.signature(j) and fed(i, j)]
    score = {(i, j): float(np.dot(wa[i][1], wb[j][1])) for i, j in alike}  # Pearson's correlation
    out = dict(pair)
    for i in {i for i, _ in score}:
        ranked = sorted(((s, j) for (k, j), s in score.items() if k == i), reverse=True)
        if not ranked or ranked[0][0] <= 0.9 or (len(ranked) > 1 and ranked[0][0] - ranked[1][0] <= 0.1):
            continue
        j = ranked[0][1]
        if max((s, k) for (k, m), s in score.items() if m == j)[1] == i:
            out[i] = j
    return out


def by_names(a, b, pair: dict[int, int]) -> dict[int, int]:
    """`pair` with the anchors its structural keys left unpaired paired by their node names where the file kept ours
    (a quantizer's Q/DQ file, a converter's): one anchor of that name on each side, of one signature. Identical
    parallel branches that merge again (two convs of one input summed) have no unique history or future."""
    na, nb, taken = a.model.graph.node, b.model.graph.node, set(pair.values())
    theirs: dict[str, list[int]] = {}
    for j in b.anchors:
        if j not in taken and nb[j].name:
            theirs.setdefault(nb[j].name, []).append(j)
    out = dict(pair)
    for i in a.anchors:
        js = theirs.get(na[i].name) if i not in pair and na[i].name else None
        if js is not None and len(js) == 1 and a.signature(i) == b.signature(js[0]):
            out[i] = js[0]
    return out


def _fed_from(a, b, pair: dict[int, int]):
    """(i, j) -> whether `a`'s anchor i and `b`'s anchor j read their input from the same place: the nearest anchors
    (or graph inputs) upstream of i's input, through `pair`, are those upstream of j's. True where one of i's is
    unpaired (nothing says they differ)."""
    memo_a: dict = {}
    memo_b: dict = {}
    mine: dict[int, set] = {}  # i -> its sources through `pair`, worked out once (a layer's i meets every j)

    def sources(g, memo, k: int) -> frozenset:
        t = g.model.graph.node[k].input[0]
        return g._sources(t, memo) if g.computed(t) else frozenset()

    def fed(i: int, j: int) -> bool:
        if i not in mine:
            mine[i] = {pair.get(s) if isinstance(s, int) else s for s in sources(a, memo_a, i)}
        return None in mine[i] or mine[i] == sources(b, memo_b, j)

    return fed


_SAMPLED = 1 << 19  # values of a weight correlated at most (a row more): its rows at a stride beyond that (`_unit`)


def _nbits_unit(node, inits: dict):
    """`_unit` of a MatMulNBits node's dequantized weight [K, N], only the rows `_unit` reads dequantized."""
    from cp_debug.precision.nbits import dequantize

    a = {x.name: x.i for x in node.attribute}
    shape = (int(a.get("K", 0)), int(a.get("N", 0)))
    return _unit(dequantize(node, inits, _stride(shape)), shape)


def _stride(shape) -> int:
    """The row stride `_unit` reads a weight of `shape` at (1: every row)."""
    import numpy as np

    return -(-int(np.prod(shape)) // _SAMPLED) if len(shape) else 1


def _unit(w, shape=None):
    """(shape, `w` flattened, centred and scaled to unit norm in float32): the dot of two vectors is their Pearson
    correlation; None for no weight or a constant one. A weight of more than `_SAMPLED` values is read at every k-th
    row (the same rows of two weights of one shape: a correlation of ~0.5 M values, ±0.002, where the pairing asks
    > 0.9 and 0.1 clear of the next); the rows read only (a file's stored weight is mapped: its pages read as touched)
    and copied once, in row order (a dequantized weight is a transposed view: `np.array` kept its layout and `ravel`
    copied it again: 6 of the 7 s a 0.5 B model's 96 MLP weights took). `shape`: the whole weight's, where `w` holds
    only its rows at `_stride` already (`_nbits_unit`)."""
    import numpy as np

    if w is None:
        return None
    step = _stride(np.shape(w)) if shape is None else 1  # `shape`: `w` is the whole weight's rows read already
    x = np.array(w[::step], np.float32, order="C").ravel()  # a copy: centred in place below
    x -= np.float32(np.mean(x, dtype=np.float64))
    norm = float(np.sqrt(np.dot(x, x)))
    if not norm > 0:
        return None
    x /= np.float32(norm)
    return tuple(np.shape(w) if shape is None else shape), x

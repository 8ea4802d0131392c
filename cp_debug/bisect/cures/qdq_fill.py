"""A Q/DQ range set by a constant the graph writes, not by the data (issue 115, item 2: "constants ... out of range
(a fill) said as such"), and the nodes whose exclusion keeps it out of every range.

A `Pad` written as Keras' 'same' max-pool does (a constant border far below the data, -1e4, so the pooling never picks
it; fer's mini-Xception rebuilt in PyTorch) is calibrated with its border: ONNX Runtime's `quantize_static` gives the
pad's output a range [-1e4, 0] and the `MaxPool` after it the same scale (one scale for the tensors a pooling passes
on), so every value the pooling hands on rounds to zero. The file's pair names no outlier channel: the value that set
the range is the pad's `constant_value`, which no reference tensor shows beyond the border. The same holds for an
attention mask's fill (`Where(mask, x, -1e4)`) or any constant a node writes into a tensor the file quantizes.

`fill_range` reads, for the DequantizeLinear of a pair whose range loses the reference's values, the tensors its
scale quantizes (the pair's own and those sharing the scale initializer), the node writing each, and the constant
inputs of that node (an initializer, a `Constant`, or either read through its own Q/DQ pair): one whose magnitude
reaches half the range's end while the reference's values stay ten times below it set the range. The words say the
constant and its node; the cure's ladder gets that node with the pair's readers, then every node of the file that
writes the same constant into a quantized tensor (each block's pad: one left in INT8 collapses its block alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SETS = 0.5  # a constant this share of the range's end (or more) sets it
ABOVE = 10.0  # ... where the reference's values stay this far below it


@dataclass(frozen=True)
class Fill:
    """The constant `value` that node `node` (op `op`) writes into a tensor whose Q/DQ range it sets, and `same`: the
    file's nodes writing that constant into a quantized tensor (`node` among them)."""

    value: float
    node: str
    op: str
    same: tuple[str, ...]

    def words(self, end: float, value: np.ndarray) -> str:
        data = _data(value, self.value)
        reached = float(np.max(np.abs(data))) if data.size else 0.0
        others = (f"; {len(self.same)} node(s) of the file write it into a quantized tensor" if len(self.same) > 1
                  else "")
        return (f" — a range set by the constant {self.value:.3g} that {self.op} {self.node!r} writes (not the data: "
                f"the reference's values reach |x| {reached:.3g}, the range's end {end:.3g}){others}")


def fill_range(model, dq, value: np.ndarray, end: float) -> Fill | None:
    """The `Fill` that sets the range of the pair ending at DequantizeLinear `dq` (module docstring), where the
    reference's `value` there stays ten times below the range's `end` (|lo| or |hi|, the larger); None otherwise."""
    from cp_debug.graph.qdq_pair import QdqIndex

    index = QdqIndex.of(model)
    producer, inits = index.writer, index.inits
    for tensor in (q.input[0] for q in index.quantizers(dq.input[1])):
        writer = producer.get(tensor)
        found = _constant(writer, producer, inits) if writer is not None else None
        if found is None or abs(found) < SETS * end:
            continue
        data = _data(value, found)  # the pad's own output holds the fill at its border: the data is the rest
        if end > ABOVE * (float(np.max(np.abs(data))) if data.size else 0.0):
            return Fill(found, writer.name, writer.op_type, _same(model, writer.op_type, found, producer, inits))
    return None


def _data(value: np.ndarray, fill: float) -> np.ndarray:
    """`value` without the elements equal to `fill` (a pad's border)."""
    v = np.asarray(value, np.float64).ravel()
    return v[~np.isclose(v, fill, rtol=1e-3, atol=0.0)]


def _constant(node, producer: dict, inits: dict) -> float | None:
    """The largest-magnitude scalar constant among `node`'s inputs (an initializer or `Constant`, possibly read
    through its Q/DQ pair or an Identity/Cast), or None."""
    from onnx import numpy_helper

    from cp_debug.graph.qdq_pair import own_pair

    best = None
    for x in node.input[1:]:
        dq = None
        for _ in range(4):  # through DequantizeLinear ← QuantizeLinear, Identity, Cast
            p = producer.get(x)
            if x in inits or p is None or p.op_type not in ("DequantizeLinear", "QuantizeLinear", "Identity", "Cast"):
                break
            dq = p if p.op_type == "DequantizeLinear" else dq
            x = p.input[0]
        if x in inits and int(np.prod(inits[x].dims)) != 1:  # a weight, no fill
            continue
        pair = own_pair(dq, inits) if x in inits and dq is not None and dq.input[0] == x else None
        if pair is not None and pair.from_initializers:  # a constant stored quantized: its value
            arr = (numpy_helper.to_array(inits[x]).astype(np.float64) - pair.zero) * pair.scale \
                if pair.zero_from is not None else None
        elif x in inits:
            arr = numpy_helper.to_array(inits[x])
        elif x in producer and producer[x].op_type == "Constant":
            attr = next((a for a in producer[x].attribute if a.name == "value"), None)
            arr = numpy_helper.to_array(attr.t) if attr is not None else None
        else:
            continue
        if arr is None or arr.size != 1 or not np.issubdtype(arr.dtype, np.floating):
            continue
        v = float(arr.ravel()[0])
        if np.isfinite(v) and (best is None or abs(v) > abs(best)):
            best = v
    return best


def _same(model, op: str, value: float, producer: dict, inits: dict) -> tuple[str, ...]:
    """The nodes of op `op` that write `value` (within 1e-3 relative) into a tensor the file quantizes."""
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    out = []
    for n in model.graph.node:
        if n.op_type != op or not any(o in quantized for o in n.output):
            continue
        v = _constant(n, producer, inits)
        if v is not None and abs(v - value) <= 1e-3 * abs(value):
            out.append(n.name)
    return tuple(out)


def restorations(run, state, stage: int) -> list:
    """The intervention's candidates in a user's Q/DQ file (`intervention.confirm`, after its shared scales): each
    constant that sets a pair's range (`fill_range`'s test, read from every QuantizeLinear of the stage whose
    writer takes a scalar constant and whose data input's reference value is known), restored by leaving every node
    that writes it out of INT8 together (`Fill.same`: one left quantized collapses its block alone), named by the
    probe of the first one's output. At most one candidate a constant."""
    from cp_debug.bisect.cures.restore import EXCLUDE, Restoration, quantized_as
    from cp_debug.graph.qdq_pair import INITIALIZER, QdqIndex

    st = run.stage_of(state.label, stage) if state.spec.onnx_dir is not None else None  # a user's file only
    pm = st.probe_map() if st is not None else None
    if pm is None:
        return []
    model = st.onnx()
    index = QdqIndex.of(model)
    producer, inits = index.writer, index.inits
    entered, by_tensor = entered_at(pm, producer, run.store), {t: p for p, t in pm.tensors.items()}

    def probe(t: str) -> str | None:
        p = entered.get(t) or by_tensor.get(t)
        return p if p in run.probes else None

    out, seen = [], set()
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2):
        writer = producer.get(q.input[0])
        c = _constant(writer, producer, inits) if writer is not None and writer.input else None
        pair = index.pair(q) if c is not None and round(c, 6) not in seen else None
        if pair is None or pair.scale_from != INITIALIZER or pair.zero_from != INITIALIZER \
                or pair.qtype not in ("int8", "uint8") or pair.ends is None:
            continue
        end = float(max(abs(pair.ends[0]), abs(pair.ends[1])))
        data = probe(writer.input[0])
        if data is None or data not in run.store or abs(c) < SETS * end:
            continue
        if not end > ABOVE * float(np.max(np.abs(_data(run.store.get(data), c)), initial=0.0)):
            continue
        seen.add(round(c, 6))
        same = _same(model, writer.op_type, c, producer, inits)
        named = probe(writer.output[0]) or probe(q.output[0]) or data
        out.append(Restoration(named, stage, EXCLUDE, nodes=same, in_file=True, fmt=quantized_as(state),
                               source=f"the {writer.op_type} node(s) writing the constant {c:.3g} that sets its "
                                      "range"))
    return out


def entered_at(pm, producer: dict, measured) -> dict[str, str]:
    """Each tensor entering a QuantizeLinear whose DequantizeLinear's output a probe is mapped to → that probe (one
    `measured` holds the reference's value of, where modules share the tensor: a block and its last layer)."""
    from cp_debug.graph.qdq_pair import float_behind

    out = {}
    for p, t in sorted(pm.tensors.items(), key=lambda pt: pt[0] in measured):  # a measured one last: it stays
        if (src := float_behind(producer, t)) is not None:
            out[src] = p
    return out

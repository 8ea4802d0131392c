"""A Q/DQ pair that rounds to zero before a Log / Div / Sqrt / Pow, named at its tensor (issue 115, item 2): the
INT8 / FP8 counterpart of `flush_why.py`.

An audio model's log-power in a user's per-tensor INT8 file: `Log(Max(Sqrt(re² + im²)², 1e-12))`, each of `re²`,
`im²` and their sum read through a Q/DQ pair whose scale (0.75–0.92, zero point -128) is set by the loudest bins:
every power below half a step rounds to exactly 0, and the Log turns it into log(1e-12) = -27.6. The pairs' own error
is small (rel. RMSE 0.03: the quiet bins are small), so no own-error ranking sees it; the Log's error is 6.5 — far
beyond its input's, with no local error of its own. The finding walks back from the op needing a positive input
through element-wise and layout nodes to the Q/DQ pairs on that chain, reads the reference's values of the tensors
they quantize (one FP32 run of the stage, those tensors exposed), and says the share of nonzero values that
quantize-dequantize to 0 at each pair's scale and zero point. The pairs that flush (`MIN_SHARE`) are removed — those
tensors kept float, what the quantizer's `nodes_to_exclude` of their producers writes — and the stage run to its
outputs; where that does not bring them back, every activation pair upstream of the op too (the front end). The
*where* finding places the root cause at the flushing tensor nearest the op, with the numbers and the outcome.

A candidate running the user's own Q/DQ file on ONNX Runtime reads its pairs in the file, its cure the pairs removed;
the built-in INT8 candidate reads them in the graph its runner quantizes (`quantize_int8_cached`, the same cached
graph), its cure the pairs' writers and readers left out of INT8 (`--exclude-int8`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cp_debug.bisect.cures.restore import quantized_as
from cp_debug.bisect.findings.flush_why import NEEDS_POSITIVE, PRODUCERS

ELEMENTWISE = PRODUCERS | {"Sqrt", "Max", "Min", "Clip", "Relu", "Neg", "Reciprocal"}
LAYOUT = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast", "Flatten", "Expand"})
QDQ = ("QuantizeLinear", "DequantizeLinear")
MIN_SHARE = 0.05  # a pair flushes where this share of its tensor's nonzero values reads 0
BEYOND = 4.0  # the op's error this many times the worst of its chain's
_NODES = 48  # nodes walked back at most


@dataclass(frozen=True)
class Pair:
    """One Q/DQ pair on the chain: the float tensor it quantizes, its scale and zero point, its nodes, the share of
    the reference's nonzero values that read 0 through it, and the probe that holds the tensor (None: none)."""

    tensor: str
    scale: float
    zero: int
    nodes: tuple[str, ...]  # the QuantizeLinear and the DequantizeLinear(s) reading it
    share: float
    probe: str | None


@dataclass(frozen=True)
class QdqFlush:
    op: str
    node: str
    pairs: tuple[Pair, ...]  # those that flush, nearest the op first
    rel: float  # the op's probe's rel. RMSE
    chain_rel: float | None  # the worst rel. RMSE of the probes on its chain (None: none measured)
    producer: str  # "Add 'name'": the node writing the flushing tensor nearest the op
    probe: str  # where the root is placed: the flushing tensor's probe nearest the op (its producer), else the op's
    before: float | None = None  # the outputs' error ÷ budget as deployed
    cured: float | None = None  # with the flushing pairs removed
    back: bool | None = None
    flips: int = 0  # the decisions still flipped with them removed
    excluded: tuple[str, ...] = ()  # the built-in: the nodes left out of INT8 to keep them float
    front: tuple[str, ...] = ()  # every activation pair's tensor upstream of the op, tried where `back` is not
    front_cured: float | None = None
    front_back: bool | None = None
    front_flips: int = 0
    # (`restore.Restoration`, `restore.OutputError`) of the cure run to the outputs: the intervention takes it in
    at_outputs: tuple | None = field(default=None, compare=False)
    fmt: str = "INT8"  # the pairs' format: "FP8" (float8 zero points) flushes below 2^-10 × its scale

    @property
    def share(self) -> float:
        return max(p.share for p in self.pairs)

    def words(self, front: bool = False) -> str:
        if front:
            return f"every activation Q/DQ pair before the {self.op} removed: {len(self.front)} tensor(s) kept float"
        return f"the Q/DQ pairs of {', '.join(repr(p.tensor) for p in self.pairs)} removed (kept float)"

    def text(self) -> str:
        first, rest = self.pairs[0], self.pairs[1:]
        more = ("; on its chain also " + ", ".join(f"{p.tensor!r} {p.share:.0%} (scale {p.scale:.3g}, zero point "
                                                    f"{p.zero})" for p in rest)) if rest else ""
        chain = f", its chain's worst {self.chain_rel:.3g}" if self.chain_rel is not None else ""
        below = "half a step" if self.fmt == "INT8" else "half float8's smallest subnormal, 2^-10 × the scale"
        head = (f"{self.fmt} flushes to zero before the {self.op} '{self.node}': its input's producer {self.producer} "
                f"writes {first.tensor!r}, whose Q/DQ pair (scale {first.scale:.3g}, zero point {first.zero}) rounds "
                f"{first.share:.0%} of the reference's nonzero values to 0 (|x| below {below}){more}; the "
                f"{self.op} of those zeros makes its error (rel. RMSE {self.rel:.3g}{chain}), which no pair's own "
                "error shows")
        names = ", ".join(repr(p.tensor) for p in self.pairs)
        if self.back is None:
            return f"{head}; keep {names} float (leave their producers out of the file's quantization)"
        if self.back:
            how = f"--exclude-int8 {','.join(self.excluded)}" if self.excluded else "their Q/DQ pairs removed"
            return (f"{head}; verified at the outputs: keeping {names} float ({how}) brings them "
                    f"back ({self.before:.3g}× → {self.cured:.3g}× their budget)")
        tail = (f"; keeping {names} float moves the outputs {self.before:.3g}× → {self.cured:.3g}× their budget, "
                f"{_not_back(self.flips)}")
        if self.front_back is not None:
            tail += (f"; with every activation pair before the {self.op} removed too ({len(self.front)} tensors: "
                     f"{', '.join(self.front[:6])}{' …' if len(self.front) > 6 else ''}) "
                     + (f"they come back ({self.front_cured:.3g}×)" if self.front_back
                        else f"{self.front_cured:.3g}×, {_not_back(self.front_flips)}"))
        return head + tail


def _around(model, writer: dict, pairs, quantize: bool = False) -> tuple[str, ...]:
    """The built-in's nodes to leave out of INT8 so that `pairs`' tensors stay float: each tensor's writer and the
    nodes reading its pair (`int8.out_of_int8` has them read the float tensor)."""
    qs = pairs if quantize else [_quantize_of(model, p.tensor) for p in pairs]
    out = []
    for q in (q for q in qs if q is not None):
        made = writer.get(q.input[0])
        if made is not None and made.op_type not in QDQ and made.name:
            out.append(made.name)
        dqs = {d.output[0] for d in model.graph.node if d.op_type == "DequantizeLinear" and d.input[0] == q.output[0]}
        out += [n.name for n in model.graph.node if n.name and n.op_type not in QDQ and set(n.input) & dqs]
    return tuple(dict.fromkeys(out))


def _quantize_of(model, tensor: str):
    return next((n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor), None)


def _not_back(flips: int) -> str:
    return f"not back ({flips} decision(s) still flipped)" if flips else "not back"


def qdq_flush(run, state, results, first_divergent: str | None, root: str | None) -> QdqFlush | None:
    """The flush before an op needing a positive input at the first divergent probe (else the root), or None."""
    from cp_debug.bisect.cures.restore import own_nodes

    by = {r.probe: r for r in results}
    for probe in dict.fromkeys(x for x in (first_divergent, root) if x):
        own = own_nodes(run, state, probe)
        r = by.get(probe)
        if own is None or r is None or r.diff is None:
            continue
        model, mine = own
        if state.spec.onnx_dir is None:  # the built-in INT8 / FP8: the graph its runner quantized (its node names),
            if not any(n.name in mine and n.op_type in NEEDS_POSITIVE for n in model.graph.node):
                continue  # quantized only where the float graph's probe holds such an op
            model = _quantized(run, state, run.probes[probe].stage, model)
            if model is None:
                return None
        writer = {t: n for n in model.graph.node for t in n.output}
        target = next((n for n in model.graph.node if n.name in mine and n.op_type in NEEDS_POSITIVE), None)
        if target is None:  # the probe's tensor read through its own pair
            n = next((n for n in model.graph.node if n.name in mine), None)
            while n is not None and n.op_type in QDQ:
                n = writer.get(n.input[0])
            target = n if n is not None and n.op_type in NEEDS_POSITIVE else None
        if target is not None:
            found = _examined(run, state, by, probe, model, writer, target)
            if found is not None:
                return found
    return None


def _examined(run, state, by: dict, probe: str, model, writer: dict, target) -> QdqFlush | None:
    from cp_debug.bisect.cures.experiment import OrtFp32Reference
    from cp_debug.graph.qdq_pair import QdqIndex

    p = run.probes[probe]
    index = QdqIndex.of(model)
    inits, readers = index.inits, index.readers
    pairs, walked = _walk(writer, inits, target)
    if not pairs:
        return None
    pm = run.stage_of(state.label, p.stage).probe_map()
    probe_of = {t: name for name, t in (pm.tensors.items() if pm is not None else ()) if name in by}
    for q in pairs:  # a probe of a quantized tensor maps onto its pair's DequantizeLinear output
        for t in (q.output[0], *(d.output[0] for d in readers.get(q.output[0], ()))):
            if t in probe_of:
                probe_of.setdefault(q.input[0], probe_of[t])
    chain = [by[probe_of[t]].diff.rel_rmse for t in [*walked, *(q.input[0] for q in pairs)] if t in probe_of
             and probe_of[t] != probe and by[probe_of[t]].diff is not None]
    rel = by[probe].diff.rel_rmse
    chain_rel = max(chain) if chain else None
    if chain_rel is not None and not rel >= BEYOND * chain_rel:
        return None
    reference = run.subject.stages[p.stage].onnx()
    known = {t for n in reference.graph.node for t in n.output}
    tensors = [q.input[0] for q in pairs if q.input[0] in known]
    if not tensors:
        return None
    ref = OrtFp32Reference(reference, run.ref_feeds[p.stage], determinism=run.det)(tensors)
    flushing = [x for x in (_pair(q, ref, index, probe_of) for q in pairs) if x is not None]
    if not flushing:
        return None
    at = next((x.probe for x in flushing if x.probe is not None), probe)
    made = writer.get(flushing[0].tensor)
    producer = f"{made.op_type} '{made.name}'" if made is not None else f"'{flushing[0].tensor}'"
    found = QdqFlush(target.op_type, target.name, tuple(flushing), rel, chain_rel, producer, at,
                     fmt=quantized_as(state))
    return _tried(run, state, p.stage, found, model, writer, target, inits)


def _quantized(run, state, stage: int, model):
    """The built-in INT8 candidate's quantized graph of `model` (its stage), as its runner makes it (cached), else
    None (FP8, block formats)."""
    if state.spec.precision != "int8":
        return None
    from cp_debug.precision.int8_cache import quantize_int8_cached

    method = run.ort_kwargs(state.spec, model).get("calib_method", "minmax")
    return quantize_int8_cached(model, run.calib(stage), method=method).model


def _walk(writer: dict, inits: dict, target) -> tuple[list, list[str]]:
    """Back from `target`'s input (a Div's divisor) through element-wise and layout nodes and the Q/DQ pairs between
    them: the pairs' QuantizeLinear nodes, nearest first, and the tensors the other nodes write."""
    start = target.input[1] if target.op_type == "Div" and len(target.input) > 1 else target.input[0]
    pairs, seen, todo, walked = [], set(), [start], []
    while todo and len(seen) < _NODES:
        n = writer.get(todo.pop(0))
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type == "DequantizeLinear":
            q = writer.get(n.input[0])
            if q is not None and q.op_type == "QuantizeLinear" and q.input[0] not in inits:
                pairs.append(q)
                todo.append(q.input[0])
        elif n.op_type in ELEMENTWISE or n.op_type in LAYOUT:
            walked.append(n.output[0])
            todo += [x for x in n.input if x and x not in inits and x in writer]
    return pairs, walked


def _pair(q, ref: dict, index, probe_of: dict) -> Pair | None:
    """QuantizeLinear `q`'s pair (`index`: `graph/qdq_pair.QdqIndex`; its scale an initializer) where it flushes
    `MIN_SHARE` of the reference's nonzero values (per tensor), else None."""
    from cp_debug.graph.qdq_pair import INITIALIZER

    pair = index.pair(q)
    if q.input[0] not in ref or pair is None or pair.scale_from != INITIALIZER or not pair.per_tensor:
        return None
    share = _share(np.asarray(ref[q.input[0]], np.float64), pair)
    if share < MIN_SHARE:
        return None
    zero = int(pair.zero.reshape(-1)[0]) if pair.zero.size else 0
    return Pair(q.input[0], pair.step, zero, (q.name, *(d.name for d in pair.dequantize)), share,
                probe_of.get(q.input[0]))


def _share(x: np.ndarray, pair) -> float:
    """The share of `x`'s nonzero values that quantize-dequantize to exactly 0 through a per-tensor `pair`."""
    nonzero = x[x != 0]
    if nonzero.size == 0:
        return 0.0
    s = pair.step
    if not pair.qtype.startswith("float"):
        z = float(pair.zero.reshape(-1)[0])
        q = np.clip(np.rint(nonzero / s) + z, pair.qmin, pair.qmax)
        return float(np.mean(q == z))
    # float8: its smallest subnormal is 2^-9; below half of it (times the scale) reads 0
    return float(np.mean(np.abs(nonzero) < s * 2.0 ** -10))


def _tried(run, state, stage: int, found: QdqFlush, model, writer: dict, target, inits) -> QdqFlush:
    """`found` with its pairs removed and run at the outputs; where not back, every activation pair upstream too,
    whatever writes them — also where its own pairs' removal leaves the outputs no better: the pairs that flush may
    stand before a linear producer (swift-f0's filterbank MatMul reads a power its STFT's pairs already flushed:
    keeping its own output float changes nothing, the front end float brings them back)."""
    from dataclasses import replace

    from cp_debug.bisect.cures.restore import EXCLUDE, KEPT_FLOAT, Restoration, output_error, run_restored

    own = state.spec.onnx_dir is not None
    r = (Restoration(found.probe, stage, KEPT_FLOAT, nodes=tuple(n for x in found.pairs for n in x.nodes), detail=found)
         if own else Restoration(found.probe, stage, EXCLUDE, nodes=_around(model, writer, found.pairs),
                                 source="the flush's pairs' nodes"))
    before = output_error(run, state, stage, run_restored(run, state, stage, []))
    err = output_error(run, state, stage, run_restored(run, state, stage, [r]))
    found = replace(found, before=before.ratio, cured=err.ratio, back=err.back, flips=err.flips,
                    excluded=() if own else r.nodes)
    if err.back:
        r = replace(r, detail=found)
        return replace(found, at_outputs=(r, err))
    # the front end: every activation pair upstream of the op
    seen, todo, nodes, tensors = set(), list(target.input), [], []
    while todo:
        n = writer.get(todo.pop())
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type == "QuantizeLinear" and n.input[0] not in inits:
            tensors.append(n.input[0])
            nodes += [n.name, *(d.name for d in model.graph.node if d.op_type == "DequantizeLinear"
                                and d.input[0] == n.output[0])]
        todo += [x for x in n.input if x and x not in inits]
    if not own:  # the built-in: every node reading or writing them left out of INT8
        nodes = list(_around(model, writer, [x for x in model.graph.node if x.name in nodes
                                               and x.op_type == "QuantizeLinear"], quantize=True))
    if not set(nodes) > set(r.nodes):
        return found
    wide = replace(r, nodes=tuple(dict.fromkeys(nodes)), segment=True,
                   source=None if own else f"every pair before the {found.op}: its nodes")
    werr = output_error(run, state, stage, run_restored(run, state, stage, [wide]))
    found = replace(found, front=tuple(dict.fromkeys(tensors)), front_cured=werr.ratio, front_back=werr.back,
                    front_flips=werr.flips)
    best = (replace(wide, detail=found), werr) if werr.back else (replace(r, detail=found), err)
    return replace(found, at_outputs=best)

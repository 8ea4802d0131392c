"""Why the root cause's segment loses its values in INT8, and whether leaving its layer out of INT8 cures it: the
INT8 side of `segment_why.py`, on the same segment (cut from the reference's boundary tensors, quantized as the
candidate quantizes it, calibrated on the reference's boundary values as local errors are).

The finding is the first tensor the segment quantizes whose values its per-tensor range cannot hold: most of its
nonzero values round to zero (a range set by a few outliers: "INT8 resolution lost"), or some lie beyond it
("INT8 saturation"). Then the cure ladder on the same segment, smallest change first (issue 84, item 4): that tensor
quantized at a range fitted to it (`int8_range_rung.py`: the other channels' range where outlier channels set it;
weights are per channel already), its quantized readers (the Conv / MatMul / Gemm that read it through Q/DQ) left out
of INT8, then with the op that wrote it too; a rung is called a cure ("verified") only when the segment's local error
comes back within INT8's budget, and the rungs tried before it are said with their figures. Without such a tensor the
advice is the hint's own ("exclude this layer"): every quantized node of the segment, tried the same way. A Clip
ONNX Runtime's ClipQuantFusion drops in the segment is its own why, first (`clip_fusion.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.findings.hints import BOUNDED, Int8Range, bounded_range, int8_range
from cp_debug.bisect.cures.int8_range_rung import RangeRung, range_rung, with_range
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.bisect.cures.ladder import climb
from cp_debug.bisect.cures.ladder import named as _named
from cp_debug.bisect.findings.segment_why import root_segment, run_segment
from cp_debug.compare.diff import TensorDiff

LOST_SHARE = 0.5  # a tensor whose nonzero values mostly round to zero: its range is set by outliers
SATURATED_SHARE = 1e-4  # as hints.py: a share of values beyond the calibrated range worth naming
OUTLIER_RATIO = 8.0  # a channel whose |x| max is this many times the channels' median max is an outlier channel
OUTLIER_LOST = 0.1  # with outlier channels setting the range, a share of values rounded to zero worth naming
FP32_EPS = float(np.finfo(np.float32).eps)  # a value this far below the range adds nothing in FP32 to one at it:
# no value INT8 loses (g2p-id's BERT: its padding keys' attention weights, median 1.7e-21 at a range of 1)


@dataclass(frozen=True)
class Int8Finding:
    tensor: str  # the quantized tensor (original ONNX name)
    readers: tuple[str, ...]  # "module: Op 'node'" of each quantized node reading it
    amax: float  # its calibrated range ±amax
    absmax: float  # the reference's |x| max there
    median: float  # the reference's median nonzero |x|
    lost: float  # share of the nonzero values that round to zero
    saturated: float  # share of the values beyond ±amax
    outliers: tuple[int, int, float] | None = None  # outlier channels, channels, their max over the others' median
    op: str | None = None  # the op writing the tensor: one that bounds its output (`hints.BOUNDED`) sets the range

    def text(self) -> str:
        at = "; ".join(self.readers)
        if self.lost > LOST_SHARE and self.op in BOUNDED:  # the range is the op's, as the probe's reading says it
            rng = Int8Range(self.amax, self.saturated, self.lost, median=self.median)
            return (f"INT8 resolution lost at {at}: it reads {self.tensor!r} quantized per tensor at "
                    f"±{self.amax:.3g}: {self.lost:.0%} of its nonzero values round to zero — "
                    f"{bounded_range(rng, self.op)}")
        if self.lost > LOST_SHARE or (self.outliers and self.saturated <= SATURATED_SHARE):
            by = "outliers"
            if self.outliers:
                k, n, ratio = self.outliers
                by = f"{k} outlier channel{'s' * (k > 1)} of {n}, {ratio:.3g}× the other channels' median |x| max"
            return (f"INT8 resolution lost at {at}: it reads {self.tensor!r} quantized per tensor at "
                    f"±{self.amax:.3g}, a range set by {by} (|x| max {self.absmax:.3g}, median nonzero |x| "
                    f"{self.median:.3g}): {self.lost:.0%} of its nonzero values round to zero (|x| < half a step, "
                    f"{self.amax / 254:.3g})")
        return (f"INT8 saturation at {at}: it reads {self.tensor!r} quantized at ±{self.amax:.3g} and "
                f"{self.saturated:.2%} of the reference's values lie beyond (|x| max {self.absmax:.3g})")


@dataclass(frozen=True)
class Int8Why:
    finding: Int8Finding | None  # None: no quantized tensor of the segment stands out; the layer's nodes tried
    exclude: tuple[str, ...]  # the ONNX nodes advised out of INT8 (the last set tried where none cured)
    names: str  # those nodes with their modules, as the advice names them
    verified: bool
    before: float  # the segment's local rel. RMSE as the candidate runs it
    after: float  # ... with `exclude` left out of INT8
    budget: float | None  # INT8's budget there (rel. RMSE; None with --tolerance-mode fixed)
    tried: int = 1  # how many sets were tried
    rungs: tuple[str, ...] = ()  # the rungs tried before the last, each with its figure (`int8_range_rung`)
    ranged: RangeRung | None = None  # the last rung, where it is the range's, not a set left out
    worse: bool = False  # the last rung passes its segment and leaves the outputs worse (`at_outputs.py`): none offered
    at_outputs: tuple | None = None  # the last rung's (before, after) `OutputError`s where it was judged there

    def text(self) -> str:
        why = (self.finding.text() if self.finding is not None
               else "INT8 quantisation error of this layer (no tensor its segment quantizes loses most of its "
                    "values to an outlier range or saturates)")
        if self.rungs:
            why += "; tried first (weights are per channel already): " + "; ".join(self.rungs)
        if self.worse:
            from cp_debug.bisect.cures.at_outputs import NONE_OFFERED

            return f"{why}; {NONE_OFFERED}"
        limit = f", int8's budget {self.budget:.3g}" if self.budget is not None else ""
        numbers = f"local rel. RMSE {self.before:.3g} → {self.after:.3g}{limit}"
        flag = f"--exclude-int8 {','.join(self.exclude)}"
        held = ""
        if self.verified and self.at_outputs is not None:
            from cp_debug.bisect.cures.at_outputs import held as held_at

            held = f"; {held_at(*self.at_outputs)}"
        if self.ranged is not None:
            from cp_debug.bisect.cures.ladder import ladder_text

            return ladder_text(why, self.ranged.text(), "int8", self.before, self.after, self.budget, (),
                               self.verified, self.tried) + f"{held}; {self.ranged.how_to()}"
        if self.verified:
            return f"{why}; verified: within precision with {self.names} left out of INT8 ({flag}; {numbers}){held}"
        sets = f"; {self.tried} sets tried, the widest shown" if self.tried > 1 else ""
        return (f"{why}; leaving {self.names} out of INT8 does not cure this segment ({flag}; {numbers}{sets}); "
                "`cpdebug fix` searches the smallest set of layers to leave out of INT8 that does")


def explain_int8_segment(run: RunState, state: CandidateState, i: int, probe: str):
    """The INT8 why of `probe`'s segment for an ONNX Runtime INT8 candidate quantized here, with the advice tried on
    the segment (`Int8Why`; a Clip ONNX Runtime's ClipQuantFusion drops: `clip_fusion.ClipFusionWhy`); None where it
    does not apply (another precision, a given Q/DQ graph) or nothing is quantized."""
    from cp_debug.bisect.stages.stand_in import local_spec
    from cp_debug.precision.int8 import DEFAULT_OP_TYPES

    spec, _ = local_spec(state)
    if spec.precision != "int8" or not spec.can(Capability.ORT_SESSIONS) \
            or getattr(run.stage_of(state.label, i), "qdq_export", None) is not None:
        return None
    from cp_debug.bisect.findings.clip_fusion import module_clip_why

    clip = module_clip_why(run, state, i, probe)  # ONNX Runtime's optimiser drops a Clip: its own why, first
    if clip is not None:
        return clip
    rs = root_segment(run, state, i, probe)
    if rs is None:
        return None
    seg, feed, tensor = rs.model, rs.feed, rs.tensor
    cand = run_segment(run, str(rs.spec), seg, feed, [tensor], spec=rs.spec)
    if not cand.amax or tensor not in cand.values:
        return None
    order = [*feed, *(t for n in seg.graph.node for t in n.output)]
    quantized = [t for t in dict.fromkeys(order) if t in cand.amax]
    inner = [t for t in quantized if t not in feed]
    ref = {**feed, **(run_segment(run, "ort", seg, feed, inner).values if inner else {})}
    nodes = [n for n in seg.graph.node if n.op_type in DEFAULT_OP_TYPES]
    writes = writer_ops(run.stage_of(state.label, i).onnx())  # the stage's: a segment feed's writer too
    finding, sets, rung = None, [tuple(n.name for n in nodes)], None
    for t in quantized:
        readers = [n for n in nodes if t in n.input]
        axis = 1 if any(n.op_type.startswith("Conv") for n in readers) else -1
        found = _range_finding(t, ref.get(t), float(cand.amax[t]), axis)
        if found is None:
            continue
        writer = next((n for n in nodes if t in n.output), None)
        sets = [tuple(n.name for n in readers)] if readers else []
        if writer is not None:
            sets.append(tuple(n.name for n in [*readers, writer]))
        finding = found(tuple(_named(n, rs.named) for n in readers or [writer]), writes.get(t))
        rung = range_rung(finding, ref.get(t), axis) if cand.qdq is not None else None
        break
    sets = [s for s in sets if s]
    if not sets:
        return None
    truth = run.store.get(probe)
    before = TensorDiff.from_arrays(probe, truth, cand.values[tensor], run.tolerance(state, probe))
    by_name = {n.name: n for n in seg.graph.node}

    def values_of(step):
        if isinstance(step, RangeRung):
            return run_segment(run, str(rs.spec), seg, feed, [tensor], spec=rs.spec, facts=False,
                               qdq=with_range(cand.qdq, step.tensor, step.amax)).values[tensor]
        return run_segment(run, str(rs.spec), seg, feed, [tensor], spec=rs.spec, exclude=step).values[tensor]

    from cp_debug.bisect.cures.at_outputs import OutputsJudge

    seen, worse, judged = [], [], {}
    k, last, after, ok, budget = climb(run, state, probe, [rung, *sets] if rung else sets, values_of, seen,
                                       OutputsJudge(run, state, i), worse, judged)
    bad = {id(w.step): w for w in worse}  # within on the segment, worse at the outputs: tried, not offered

    def said(step) -> str:
        return step.text() if isinstance(step, RangeRung) else \
            f"{', '.join(_named(by_name[n], rs.named) for n in step)} left out of INT8"
    rungs = tuple(bad[id(step)].text(said(step)) if id(step) in bad else
                  f"{step.text()}: local rel. RMSE {d.rel_rmse:.3g}, not within"
                  for step, d, _ in seen[:-1] if isinstance(step, RangeRung) or id(step) in bad)
    if id(last) in bad:
        rungs += (bad[id(last)].text(said(last)),)
    if isinstance(last, RangeRung):
        return Int8Why(finding, (), "", ok, before.rel_rmse, after.rel_rmse, budget, k, rungs, last, id(last) in bad,
                       judged.get(id(last)))
    return Int8Why(finding, last, ", ".join(_named(by_name[n], rs.named) for n in last), ok,
                   before.rel_rmse, after.rel_rmse, budget, k, rungs, worse=id(last) in bad,
                   at_outputs=judged.get(id(last)))


def writer_ops(model) -> dict[str, str]:
    """Each tensor of `model`'s graph → the op type of the node writing it (a bounded op's range is its own:
    `hints.BOUNDED`)."""
    return {o: n.op_type for n in model.graph.node for o in n.output}


def _range_finding(tensor: str, value, amax: float, axis: int = -1):
    """A maker of the finding for `tensor` (given its readers' names and the op writing it) where its reference
    values do not fit ±amax, else None: most nonzero values round to zero, some saturate, or a few outlier channels
    (on `axis`, the readers' channel axis) set the range and a share of the values worth naming rounds to zero.
    Nonzero: above FP32's epsilon × the range (`FP32_EPS`), a value any sum with the range's values keeps."""
    if value is None or amax <= 0:
        return None
    full = np.abs(np.asarray(value, dtype=np.float64))
    a = full.ravel()
    nonzero = a[a > amax * FP32_EPS]  # below, zero in FP32 too: a masked softmax's 1e-21 weights are no lost values
    if not nonzero.size:
        return None
    lost = int8_range(nonzero, amax).rounded_to_zero
    saturated = int8_range(a, amax).saturated
    outliers = _outlier_channels(full, axis)
    if lost <= LOST_SHARE and saturated <= SATURATED_SHARE and not (outliers and lost > OUTLIER_LOST):
        return None
    return lambda readers, op=None: Int8Finding(tensor, readers, amax, float(a.max()), float(np.median(nonzero)),
                                                lost, saturated, outliers, op)


def _outlier_channels(a: np.ndarray, axis: int) -> tuple[int, int, float] | None:
    """The channels (on `axis`) whose |x| max stands `OUTLIER_RATIO`× above the channels' median max, where they
    are a few (at most one in eight): their count, the channels' count and the largest ratio; else None."""
    if a.ndim < 2 or a.shape[axis] < 4:
        return None
    per = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1).max(axis=1)
    med = float(np.median(per))
    if med <= 0:
        return None
    k = int((per > OUTLIER_RATIO * med).sum())
    if not 0 < k <= max(1, per.size // 8):
        return None
    return k, int(per.size), float(per.max() / med)


FIT_SATURATED = 1e-3  # a share of the input's values beyond the calibrated range that says the set misses it
FIT_WIDE = 4.0  # a calibrated range this many times the input's |x| max: two INT8 bits of the input lost


def calibration_fit(run: RunState, state: CandidateState, i: int, probe: str) -> str | None:
    """How the run's calibration fits this input on `probe`'s segment: the quantized tensor whose input |x| max
    passes its calibrated amax (a share saturates), else the one whose calibrated range is far wider than the
    input's (resolution lost), with the numbers; None where the fit is good or it does not apply. The local error
    recalibrates each segment on the input itself, so only this reading shows a calibration set drawn unlike it.
    FP8 (a float format: a range wider than the input costs it nothing until values flush) reads the first only."""
    from cp_debug.bisect.stages.stand_in import local_spec

    spec, _ = local_spec(state)
    if spec.precision not in ("int8", "fp8") or not state.int8_amax:
        return None
    rs = root_segment(run, state, i, probe)
    if rs is None:
        return None
    order = [*rs.feed, *(t for n in rs.model.graph.node for t in n.output)]
    quantized = [t for t in dict.fromkeys(order) if state.int8_amax.get(t, 0) > 0]
    inner = [t for t in quantized if t not in rs.feed]
    ref = {**rs.feed, **(run_segment(run, "ort", rs.model, rs.feed, inner).values if inner else {})}
    fits = []
    for t in quantized:
        if t not in ref or not np.size(ref[t]):
            continue
        a = np.abs(np.asarray(ref[t], dtype=np.float64))
        amax, top = float(state.int8_amax[t]), float(a.max())
        r = int8_range(a[a > 0], amax)
        fits.append((t, amax, top, int8_range(a, amax).saturated, r.rounded_to_zero))
    over = max((f for f in fits if f[3] > FIT_SATURATED), key=lambda f: f[3], default=None)
    if over is not None:
        t, amax, top, sat, _ = over
        return (f"the calibration set does not cover this input: {t!r} is calibrated at ±{amax:.3g} and the input "
                f"reaches |x| {top:.3g} ({top / amax:.3g}× its range): {sat:.2%} of its values saturate; calibrate "
                "on inputs drawn like the deployed ones (--calib)")
    wide = max((f for f in fits if f[2] > 0 and f[1] > FIT_WIDE * f[2]), key=lambda f: f[1] / f[2], default=None)
    if wide is None or spec.precision == "fp8":  # a float format keeps its relative precision over a wide range
        return None
    t, amax, top, _, zero = wide
    return (f"the calibration set's range is far wider than this input's: {t!r} is calibrated at ±{amax:.3g}, "
            f"{amax / top:.3g}× the input's |x| max {top:.3g}, which uses {127 * top / amax:.3g} of 127 INT8 levels: "
            f"{zero:.0%} of its nonzero values round to zero; calibrate on inputs drawn like the deployed ones "
            "(--calib)")

"""Why the root cause's segment loses its values in FP8 (E4M3), and the smallest change that cures it: the FP8 side
of `segment_int8.py` (issue 86, items 3 and 5), on the same segment, quantized as the candidate quantizes it
(`precision/fp8.py`: per-tensor scales amax / 448, the run's own calibrated ranges).

E4M3 is a float format: a per-tensor scale keeps 3 mantissa bits from amax down to amax · 2^-6, then subnormals
down to amax · 2^-9 / 448, and flushes what lies below half of that to zero. The findings, first quantized tensor
of the segment first (a Conv / Gemm / MatMul's data input, then its weight):
- **flush**: a per-tensor range set by a few outlier channels (or one weight slice) leaves most of the other values
  in the subnormals or flushed to zero — the channel count and ratio, the share flushed;
- **saturation**: the run's calibrated range is passed by this input (values clip to ±amax): the share beyond and
  how far, which no layer's precision explains — a calibration set drawn unlike the input.
Then the cure ladder on the same segment, smallest change first, each verified by the run's own judge (the local
error back within FP8's budget): a flushed weight read per output channel (one scale per channel: ModelOpt's ONNX
path); a saturated input calibrated on this input's range; the readers left out of FP8 (`--exclude-int8`, ModelOpt's
`nodes_to_exclude`). Nothing verified: the widest set tried, said as not curing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.bisect.cures.ladder import climb, ladder_text
from cp_debug.bisect.cures.ladder import named as _named
from cp_debug.bisect.findings.segment_int8 import _outlier_channels
from cp_debug.bisect.findings.segment_why import root_segment, run_segment
from cp_debug.compare.diff import TensorDiff

FLUSHED_SHARE = 0.25  # a share of nonzero values flushed to zero worth naming (a healthy tensor flushes ~0)
SATURATED_SHARE = 1e-4  # a share of values beyond the calibrated range worth naming (as INT8's)


@dataclass(frozen=True)
class Fp8Finding:
    kind: str  # "flush" | "saturation" | "nonfinite" (a range of inf / NaN: no rounding, NaN throughout)
    tensor: str  # the quantized tensor (original ONNX name): a data input, or a weight
    weight: bool
    readers: tuple[str, ...]  # "module: Op 'node'" of each FP8 node reading it
    amax: float  # its per-tensor range ±amax (calibrated, or max |w|)
    absmax: float  # the reference's |x| max there
    flushed: float  # share of the nonzero values that round to zero
    subnormal: float  # share of the nonzero values below E4M3's normal range
    saturated: float  # share of the values beyond ±amax
    # outlier channels, channels, their max over the others' median, which channels ("output", "input" of a weight)
    outliers: tuple[int, int, float, str] | None = None

    def text(self) -> str:
        at = "; ".join(self.readers)
        what = "weight" if self.weight else "input"
        if self.kind == "nonfinite":  # a range of inf or NaN is no range: its scale dequantizes everything to NaN
            return (f"FP8 scale {self.amax:.3g} at {at}: its {what} {self.tensor!r} has the range ±{self.amax:.3g} "
                    f"(scale amax / 448 = {self.amax / 448:.3g}), so every value it dequantizes is NaN — not a "
                    "rounding of its values")
        if self.kind == "saturation":
            return (f"FP8 saturation at {at}: its {what} {self.tensor!r} is calibrated at ±{self.amax:.3g} and this "
                    f"input reaches |x| {self.absmax:.3g} ({self.absmax / self.amax:.3g}× the range): "
                    f"{self.saturated:.2%} of its values clip to ±{self.amax:.3g}")
        by = "its largest values"
        if self.outliers:
            k, n, ratio, side = self.outliers
            by = (f"{k} outlier {side + ' ' if side else ''}channel{'s' * (k > 1)} of {n}, {ratio:.3g}× the other "
                  "channels' median |x| max")
        scale = self.amax / 448
        return (f"FP8 flush at {at}: its {what} {self.tensor!r} is quantized per tensor at ±{self.amax:.3g} (scale "
                f"{scale:.3g}), a range set by {by}: {self.flushed:.0%} of its nonzero values lie below half "
                f"E4M3's smallest subnormal step ({scale * 2.0 ** -9:.3g}) and round to zero, "
                f"{self.subnormal:.0%} below its normal range")


@dataclass(frozen=True)
class Fp8Why:
    finding: Fp8Finding | None
    cure: str  # the change tried last: "per-channel weights for …", "calibrated on …", "… left out of FP8"
    exclude: tuple[str, ...]  # the ONNX nodes the cure leaves out of FP8 (none for the first two rungs)
    verified: bool
    before: float  # the segment's local rel. RMSE as the candidate runs it
    after: float  # ... with the cure
    budget: float | None  # FP8's budget there (None with --tolerance-mode fixed)
    tried: int = 1
    split: str | None = None  # the local error split: FP8's rounding, the runtime's arithmetic (`_split`)

    def text(self) -> str:
        why = (self.finding.text() if self.finding is not None
               else "FP8 quantisation error of this layer (no tensor its segment quantizes flushes most of its "
                    "values to zero or saturates)")
        text = ladder_text(why, self.cure, "fp8", self.before, self.after, self.budget, self.exclude,
                           self.verified, self.tried)
        return f"{text}; of its local error, {self.split}" if self.split else text


def explain_fp8_segment(run: RunState, state: CandidateState, i: int, probe: str) -> Fp8Why | None:
    """The FP8 why of `probe`'s segment for an ONNX Runtime FP8 candidate quantized here, with the cure ladder tried
    on the segment; None where it does not apply (another precision, a given Q/DQ file) or nothing is quantized."""
    from cp_debug.bisect.stages.stand_in import plain_spec
    from cp_debug.precision.fp8 import COMPUTE_OPS, quantize_fp8

    if state.spec.precision != "fp8" or not state.spec.can(Capability.ORT_SESSIONS):
        return None
    rs = root_segment(run, state, i, probe)
    if rs is None:
        return None
    seg, feed, tensor = rs.model, rs.feed, rs.tensor
    nodes = [n for n in seg.graph.node if n.op_type in COMPUTE_OPS]
    if not nodes:
        return None
    amax = {t: a for t, a in state.int8_amax.items() if a > 0}  # the run's calibration, where it has one
    plain = plain_spec(state.spec.device)  # a graph holding float8 runs as the lane runs it

    def run_as(spec=plain, **variant) -> np.ndarray:
        q = quantize_fp8(seg, [feed], amax=variant.pop("amax", amax), **variant)
        return run_segment(run, str(spec), q.model, feed, [tensor], spec=spec, facts=False).values[tensor]

    truth = run.store.get(probe)
    judge = run.tolerance(state, probe)
    ran = run_as()
    before = TensorDiff.from_arrays(probe, truth, ran, judge)
    split = _split(truth, ran, run_as(plain_spec("cpu")) if plain.device != "cpu" else None)
    finding = _finding(run, seg, feed, nodes, amax, rs.named)
    k, (cure, _, exclude), after, ok, budget = climb(run, state, probe, _ladder(finding, nodes, rs.named),
                                                      lambda step: run_as(**step[1]))
    return Fp8Why(finding[0] if finding else None, cure, exclude, ok, before.rel_rmse, after.rel_rmse, budget, k,
                  split)


def _split(truth, ran: np.ndarray, emulated: np.ndarray | None) -> str:
    """The segment's local error split (issue 86, item 3): what FP8's rounding makes (the segment emulated on the CPU:
    float32 arithmetic on the E4M3-rounded values, exact to the format) and what the runtime's own arithmetic adds
    (the candidate's run against that emulation), each a relative RMS against the reference; on the CPU the runtime
    is the emulation."""
    ref = np.asarray(truth, np.float64)
    scale = float(np.sqrt(np.mean(ref ** 2))) or 1.0

    def rel(a, b) -> float:
        return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))) / scale

    if emulated is None:
        return (f"FP8 rounding itself: {rel(ran, ref):.3g} (ONNX Runtime's CPU provider computes the Q/DQ graph as "
                "float32 arithmetic on the E4M3 values: no arithmetic of its own to add)")
    return (f"FP8 rounding itself {rel(emulated, ref):.3g} (the segment emulated on the CPU), the runtime's own "
            f"arithmetic {rel(ran, emulated):.3g} more (this run against that emulation)")


def _finding(run: RunState, seg, feed: dict, nodes: list, amax: dict, named):
    """The first quantized tensor of the segment whose reference values E4M3 cannot hold at their per-tensor range,
    as (finding, its readers' nodes); None where none stands out."""
    from cp_debug.precision.fp8 import e4m3_range

    weights = {i.name: i for i in seg.graph.initializer}
    inner = [n.input[0] for n in nodes if n.input[0] not in feed and n.input[0] not in weights]
    ref = {**feed, **(run_segment(run, "ort", seg, feed, list(dict.fromkeys(inner)), facts=False).values
                      if inner else {})}
    for node in nodes:
        for t in node.input[:2]:
            weight = t in weights
            value = _weight(weights[t]) if weight else ref.get(t)
            if value is None or not np.size(value):
                continue
            a = np.abs(np.asarray(value, np.float64))
            top = float(a.max())
            rng = top if weight else float(amax.get(t, top))  # weights: max |w|; inputs: the run's calibration
            flushed, subnormal, saturated = e4m3_range(a, rng) if np.isfinite(rng) else (0.0, 0.0, 0.0)
            outliers = _outliers(a, weight, node.op_type)
            kind = ("nonfinite" if not np.isfinite(rng) else "saturation" if saturated > SATURATED_SHARE else
                    "flush" if flushed > FLUSHED_SHARE else None)
            if kind is None:
                continue
            readers = [n for n in nodes if t in n.input[:2]]
            return Fp8Finding(kind, t, weight, tuple(_named(n, named) for n in readers), rng, top, flushed,
                              subnormal, saturated, outliers), readers
    return None


def _outliers(a: np.ndarray, weight: bool, op: str) -> tuple[int, int, float, str] | None:
    """The outlier channels of |values| `a`: a data input's on its channel axis (a Conv's 1, else the last); a
    weight's output channels (axis 0), else its input channels (axis 1) — only the first a per-channel scale cures."""
    if not weight:
        found = _outlier_channels(a, 1 if op == "Conv" else -1)
        return (*found, "") if found else None
    for axis, side in ((0, "output"), (1, "input")):
        found = _outlier_channels(a, axis) if a.ndim > axis else None
        if found:
            return (*found, side)
    return None


def _weight(init) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(init)


def _ladder(finding, nodes: list, named) -> list[tuple[str, dict, tuple[str, ...]]]:
    """The changes to try, smallest first: (what it is, quantize_fp8's arguments, the nodes it leaves out)."""
    readers = finding[1] if finding else nodes
    names = tuple(n.name for n in readers)
    said = ", ".join(_named(n, named) for n in readers)
    steps = []
    if finding and finding[0].weight and finding[0].kind == "flush":
        steps.append((f"per-channel FP8 weights for {said}", {"per_channel_nodes": names}, ()))
    if finding and not finding[0].weight and finding[0].kind == "saturation":
        steps.append((f"{finding[0].tensor!r} calibrated on this input's range (calibrate on inputs drawn like the "
                      "deployed ones: --calib)", {"amax": {}}, ()))
    steps.append((f"{said} left out of FP8", {"exclude_nodes": names}, names))
    return steps

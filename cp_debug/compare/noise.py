"""What each precision's rounding is expected to bring, and the outcomes of every verdict.

One home for the noise model, so that bisect, sweep, fix and eval give the same verdict for the same numbers.

**Expected error.** A float format with a p-bit significand rounds every value to within a relative `u = 2^-p`
(unit roundoff: fp32 2^-24, TF32 and FP16 2^-11, BF16 2^-8). INT8 rounds to a per-tensor step `amax / 127`, so its
unit, on the tensor's own scale, is half a step over the reference's RMS magnitude: `amax / (254 · rms(ref))`
(amax: the candidate's calibrated `_amax` where it quantized, else the reference's max |x|). A probe downstream of
many layers carries every rounding that fed it, amplified; the error that a healthy network of that precision
reaches is `GROWTH · u` in relative RMS error (rmse / rms(ref)), at any probe. Judged on the RMS, not the
element-wise max: FP16's rounding always exceeds an element-wise tolerance somewhere in a large tensor.
`GROWTH = 64` (six of the format's bits): measured, healthy FP16 runs reach at most 24 u (trained demo, its head's
`vel` output) and 20 u (random-weights awml-base, `rot`); planted faults lie beyond it (the branch's note has the
calibration table). INT8's unit is already the tensor's own (amax / rms), and its budget `INT8_GROWTH = 8` units.
FP32 against FP32: both sides round alike, what differs is the kernels' order of summation, about `u·sqrt(K)` a
layer of K-long dot products (K = 2304, a 3×3 conv over 256 channels: 48 u), growing through the layers:
`FP32_GROWTH = 1024` (an H100's awml-base `ort-cuda` against `torch-cuda`, both FP32, reached 203 u).
FP8 (E4M3, ModelOpt's per-tensor scale amax/448) keeps 3 mantissa bits: u = 2^-4 wherever a value lies within
2^15 of its tensor's amax (E4M3's normal range), so its unit is a float format's, not INT8's per-tensor step. GROWTH's
64 u would be a budget of 4 (any answer passes): `FP8_GROWTH = 8` units, 0.5. Measured (`ort-cpu-fp8` against
torch or ort, CPU, `--level all`, random weights): the tests' 3-Conv + Linear CNN reaches 0.086 at its output
(tests/backends/test_ort_fp8.py); tests/zoo's ResNet 0.096 (0.19 of the budget), MobileNetV3-small 0.17 (0.35, its
worst probe), ViT, DETR-like and the hand-written attention 0.06 (0.12); a weight outlier that sets its conv's
per-tensor scale and flushes the rest to zero reaches 0.95 there, 1.9× the budget, a local fault.
NVFP4 (emulated: E2M1 values, 1 mantissa bit, u = 2^-2, under an E4M3 scale per 16 values) rounds a block's values to
within a quarter of themselves near its top and coarser below (0.5 steps under 2 of 6): one rounding of Gaussian
values is 0.094 rel. RMS already. `NVFP4_GROWTH = 3` units, 0.75, below 1 (an output that lost its values entirely is
beyond it). Measured (`ort-cpu-nvfp4` against torch or ort, CPU, `--level all`, random weights): tests/zoo's
MobileNetV3-small 0.56 at its worst probe (a squeeze-excitation fc2, 0.75 of the budget), ResNet 0.37, ViT 0.29,
DETR-like and the hand-written attention 0.22-0.23; the tests' CNN 0.31 and transformer block 0.21
(tests/precision/test_nvfp4.py); a weight outlier that flushes the other blocks of its layer brings 1.2-1.3× the
budget in its segment alone, named there as a local fault. MXFP8 (E4M3 values under a power-of-two scale per 32)
rounds as finely as FP8 and takes its budget, 0.5: the same zoo reaches 0.06-0.19 (MobileNetV3-small the worst). The
reference's own run-to-run noise is a lower bound: 4× its rel. RMS.
INT8's unit is each tensor's own, so a tensor of narrow spread (a classifier's 10 logits, amax/rms ≈ 2) is held to a
unit several times finer than the ReLU6 maps whose rounding it reads: a healthy MobileNetV2 calibrated on held-out
samples reached 1.8× its logits' budget with every other probe within its own (issue 84). Such a probe is judged by
the budget its input's rounding carries (`carried`: gain × the input's budget) where its input is within its own
budget and its own segment within its own.

**Depth.** A float format's probe beyond its budget only by the rounding of the layers before it is judged by the
budget that rounding carries (`carried`, bisect's `record.depth_carry`): gain (its error ÷ its input probe's) × its
input probe's budget, carried in turn (a budget grows with depth, as the rounding does), where its own segment is
within its own budget, its input within its budget and the gain ≤ `DOMINANCE`. An own error beyond its budget is
never carried; INT8 is not carried in turn (`int8_carry`). A weight-only format (int4w, int8w, "-a8") is carried
alike: its unit is a matmul's own weight rounding, and those of matmuls in series add up in quadrature (Gemma 2's
post-branch norms hand the next layer a branch's whole error, undiluted: 3.6 units at layer 1's MLP after 8 matmuls
of 0.8-1.1 units each), where its own error is its roundings' (≤ `weight_only.own_units`; a massive channel's INT8
block 2.8).
JSON: `expected_rel_rmse`, `carried_from`, `carried_reason`. Measured (a healthy 32-layer Llama, degraded before,
within after): docs/measurements.md, issue 108.

**Outcomes.** *Diverged*: a local fault — NaN/Inf where the reference is finite (a value beyond FP16's range
becomes Inf where it is stored in FP16; a finite one was kept in FP32, and is judged as any other), a shape mix-up,
or a root cause whose own error (local error) is beyond its budget and `FAR`× beyond it or, for a layer (no
measured probe inside it), `DOMINANCE`× the median of the run's other own errors — never a level's siblings, so one
fault has one verdict at every level (docs/measurements.md, issue 108: a planted MobileNetV2 was exit 1 at the
default level, exit 4 at `--level all`). A segment whose measured layers do not show its error is a fault only `FAR`
beyond. *Degraded*: beyond the precision's budget without a local fault, or detections change beyond what the
precision explains. *Within precision*: neither. *Inconclusive*: the reference's own two runs differ beyond the
candidate's budget.

**Detections.** A box lost or added whose reference (candidate) score lies within the precision's score band of
a cut is explained by the precision ("at the threshold"): the score threshold, and, where a side kept as many boxes
as the decoder allows (`post_max_size`), that side's lowest kept score (random weights put hundreds of boxes near
0.99: the cap decides there, not the threshold; a top-K is a decision like the threshold, and a box lost or gained
only because it crossed the K-th box's score is a flip, not degradation). The band is the budget itself on the score
scale (a sigmoid's slope is at most 1/4, and logits are of order 1–4). A matched box that moves by more than
the budget × the output grid's cell, or whose score changes by more than the band, or whose yaw turns by more
than its precision explains for it (below), is degraded; unless it moved `NEIGHBOUR` (a tenth of a cell) or more
(any distance where a side is full: the cap chose between two tied peaks of one object, which may lie a fraction of a
tenth of a cell apart) and every matched score moved within the band: then the "matched" box is a neighbouring peak
that NMS kept instead of a tied one (the same peak moves by at most the budget × a cell: its offset `reg` is a tensor
within its noise; a neighbour lies anywhere from a fraction of a cell to two cells away, as the offsets fall). Measured
on an H100, trained demo: FP16 "moved" a box 0.10 m and BF16 0.46–0.64 m with every probe within its budget and the
scores tied — neighbouring peaks. What this reading cannot see: a fault that moves a few boxes without changing a score
or lifting any probe's RMS beyond its budget.

**A yaw's conditioning** (`YawTurn`). A yaw is atan2(sin, cos) of the rot head at the box's peak, r = (sin, cos):
a perturbation δ of r turns it by about |δ| / |r|, so how far a precision may turn a box depends on how well the
reference itself defines its yaw. The rot map's expected noise is the budget × its RMS (the noise model's own scale:
a relative RMS error), so the yaw change a precision explains for a box is `budget × rot_rms / |r|`, and at least
`YAW_FACTOR` × the budget (a value's own rounding is relative to it: a well-defined yaw keeps a few units of
turn). Measured on the trained demo, held-out scene_1000005 (torch vs ort-cpu-fp16, every probe within 0.2× its
budget; the rot map's RMS 1.81, FP16's budget 0.031): a pedestrian at (18.0, 40.0) m has |r| = 0.0023 — its yaw is
undefined within FP16's noise (0.031 × 1.81 / 0.0023 = 25 rad: any turn; FP16 put 0.0014 on r at its cell, 0.62 |r|)
— and one at (-18.9, 20.9) m |r| = 0.022 (2.6 rad); the frame's median |r| is 0.84, where the fixed 8 × 0.031 =
0.25 rad holds. Another machine saw a box there turn 0.30 rad, beyond that fixed limit: degraded, before this
reading. Such a box is named in the reason (class, position, |r|, the turn it explains); a glue fault (atan2's
arguments swapped, a yaw offset) turns the well-defined boxes too.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from cp_debug.compare.diff import BROKEN, TensorDiff
from cp_debug.compare.modes import MODES, check_mode  # noqa: F401 - their home before; callers take them here
from cp_debug.errors import ExitCode

UNIT_ROUNDOFF: dict[str, float] = {"fp32": 2.0 ** -24, "tf32": 2.0 ** -11, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8,
                                   "fp8": 2.0 ** -4, "nvfp4": 2.0 ** -2, "mxfp8": 2.0 ** -4}
INT8_LEVELS = 127
INT8_NOMINAL = 2.0 ** -8  # INT8's unit where neither amax nor the reference's RMS is known: half a step of 127
GROWTH = 64.0
FP32_GROWTH = 1024.0  # FP32 against FP32: the summation order of two implementations, not a format's rounding
INT8_GROWTH = 8.0  # INT8's unit is already per tensor (amax/rms); calibrated on the demo's PTQ (see the note)
FP8_GROWTH = 8.0  # FP8 E4M3: 3 mantissa bits, u = 2^-4; GROWTH's 64 u would be 4 (any answer passes); see the note
NVFP4_GROWTH = 3.0  # NVFP4 E2M1: 1 mantissa bit, u = 2^-2, per-16 block scales; see the note
WEIGHT_ONLY_UNIT, WEIGHT_ONLY_GROWTH = {"int4w": .09, "int8w": .0055, "int4w-a8": .09, "int8w-a8": .0078}, 3.0  # nbits
WEIGHT_ONLY_OWN = 2.0  # a segment's own error, in units, that its weight-only roundings explain (carried: "Depth")
FLOOR_FACTOR = 4.0  # × the reference's own noise (its second run), as bisect's run_state widens tolerances
DOMINANCE = 3.0  # a local error this many times its siblings' median stands out (bisect's "no single layer")
FAR = 10.0  # a local error this many times its precision's budget is a fault whatever its siblings do
YAW_FACTOR = 8.0  # × the budget: the turn (radians) a precision explains for a well-defined yaw (`YawTurn`)
NEIGHBOUR = 0.1  # a "matched" box this many cells or more away may be a neighbouring peak (scores tied)


class Outcome(enum.Enum):
    """The verdict of a probe, a candidate, a frame or a run; ordered by severity."""

    WITHIN_PRECISION = "within_precision"
    DEGRADED = "degraded"
    DIVERGED = "diverged"
    # a candidate that ran none of its requested precision (int8 / fp16 / bf16 asked, every kernel float32): its
    # numbers say nothing of that precision, so no verdict of them (exit 3, the backend did not run as asked)
    NOT_RUN_AS_ASKED = "not_run_as_asked"
    # the reference is not stable: its own two runs (the noise floor) differ beyond the candidate's budget, so no
    # verdict of the candidate can rest on it (exit 6); a candidate's NaN/Inf or shape mix-up is diverged all the same
    INCONCLUSIVE = "inconclusive"

    @property
    def exit_code(self) -> ExitCode:
        return {"within_precision": ExitCode.OK, "degraded": ExitCode.DEGRADED,
                "diverged": ExitCode.DIVERGED, "not_run_as_asked": ExitCode.BACKEND,
                "inconclusive": ExitCode.INCONCLUSIVE}[self.value]

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")

    @property
    def severity(self) -> int:
        return ("within_precision", "inconclusive", "degraded", "diverged", "not_run_as_asked").index(self.value)

    def to_json(self) -> str:
        return self.value


def ran_none_asked(requested: str | None, effective: str | None) -> bool:
    """A reduced precision requested and none of it run (every compute kernel float32; "mixed" ran some)."""
    return requested in ("int8", "fp8", "nvfp4", "mxfp8", "fp16", "bf16") and effective == "fp32"


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The most severe of `outcomes` (within precision when there is none)."""
    return max(outcomes, key=lambda o: o.severity, default=Outcome.WITHIN_PRECISION)


def unit_roundoff(precision: str, amax: float | None = None, ref_rms: float | None = None, unit=None) -> float:
    """The relative rounding unit of `precision` (INT8: half a step over the reference's RMS; weight-only: `unit`)."""
    if precision in WEIGHT_ONLY_UNIT and unit:
        return unit
    if precision == "int8":
        if amax is not None and ref_rms and math.isfinite(amax) and amax > 0 and ref_rms > 0:
            return amax / (2 * INT8_LEVELS * ref_rms)
        return INT8_NOMINAL
    return WEIGHT_ONLY_UNIT.get(precision) or UNIT_ROUNDOFF.get(precision, UNIT_ROUNDOFF["fp32"])


def budget(precision: str, amax: float | None = None, ref_rms: float | None = None, floor: float = 0.0, unit=None):
    """GROWTH · u: the rel. RMS error a healthy `precision` reaches at a probe; ≥ FLOOR_FACTOR × its noise `floor`."""
    u = unit_roundoff(precision, amax, ref_rms, unit)
    return max(growth(precision) * u, FLOOR_FACTOR * floor if math.isfinite(floor) else 0.0)


def growth(precision: str) -> float:
    return {"int8": INT8_GROWTH, "fp8": FP8_GROWTH, "mxfp8": FP8_GROWTH, "nvfp4": NVFP4_GROWTH,
            "fp32": FP32_GROWTH, **dict.fromkeys(WEIGHT_ONLY_UNIT, WEIGHT_ONLY_GROWTH)}.get(precision, GROWTH)


@dataclass(frozen=True)
class Judgement:
    """One tensor against its precision's budget: `outcome` of the tensor alone (diverged: NaN/Inf, range, shape;
    degraded: beyond the budget), the budget (`expected_rel_rmse`) and rel. RMS error ÷ budget (`noise_ratio`)."""

    outcome: Outcome
    expected_rel_rmse: float
    noise_ratio: float
    reason: str
    carried_from: str | None = None  # the probe whose rounding this budget carries (`carried`), else its own

    @property
    def beyond(self) -> bool:
        return self.outcome is not Outcome.WITHIN_PRECISION

    def to_json(self) -> dict:
        return {"outcome": self.outcome.value, "expected_rel_rmse": self.expected_rel_rmse,
                "noise_ratio": self.noise_ratio, "reason": self.reason}  # non-finite: files.jsonable's strings


def ref_rms(d: TensorDiff) -> float | None:
    """rms(ref), from the diff's own figures (None where the error is 0 or not finite)."""
    if d.rel_rmse > 0 and math.isfinite(d.rel_rmse) and math.isfinite(d.rmse):
        return d.rmse / d.rel_rmse
    return None


def judge(d: TensorDiff, precision: str, amax: float | None = None, floor: float = 0.0, unit=None) -> Judgement:
    """`d` against `precision`'s budget (`amax`: INT8's range where known, else the reference's; `unit`: see budget)."""
    if not d.shape_ok:
        return Judgement(Outcome.DIVERGED, math.nan, math.inf, f"shape {list(d.test_shape)} ≠ {list(d.ref_shape)}")
    if precision == "int8" and amax is None:
        amax = d.ref_absmax
    exp = budget(precision, amax, ref_rms(d), floor, unit)
    if d.nan or d.inf:
        return Judgement(Outcome.DIVERGED, exp, math.inf, f"{d.nan} NaN, {d.inf} Inf where the reference is finite")
    err = d.rel_rmse if not math.isnan(d.rel_rmse) else math.inf
    ratio = err / exp if exp > 0 else (0.0 if err == 0 else math.inf)
    if ratio <= 1:
        return Judgement(Outcome.WITHIN_PRECISION, exp, ratio, f"rel. RMS error {ratio:.2g}× {precision}'s budget")
    return Judgement(Outcome.DEGRADED, exp, ratio, f"rel. RMS error {ratio:.3g}× {precision}'s budget")


def carried(j: Judgement, err: float, gain: float, source: Judgement, name: str, precision: str) -> Judgement:
    """`j` (a tensor beyond its own budget, error `err`) judged by the budget the rounding it was fed carries: where
    the probe it reads, `name`, is within its budget (`source`) and its own segment within its own (the caller's
    condition), gain × the source's budget (INT8: a classifier's 10 logits, amax/rms ≈ 2, read ReLU6 maps of a coarser
    unit, issue 84; a float format: rounding accumulated with depth, see the module). A gain beyond `DOMINANCE` is a
    segment that makes error of what it reads (a decision, a cancellation): judged by its own budget."""
    if j.outcome is not Outcome.DEGRADED or not (0 < gain <= DOMINANCE):
        return j
    exp = gain * source.expected_rel_rmse
    if not exp > j.expected_rel_rmse:
        return j
    ratio = err / exp
    outcome = Outcome.WITHIN_PRECISION if ratio <= 1 else Outcome.DEGRADED
    return Judgement(outcome, exp, ratio, f"rel. RMS error {ratio:.2g}× {precision}'s budget carried from {name} "
                     f"({source.expected_rel_rmse:.2g} there, × {gain:.3g} passed on; its own {j.noise_ratio:.3g}×)",
                     name)


def status_of(d: TensorDiff, j: Judgement) -> str:
    """The report's `status` word (unchanged vocabulary) for a tensor judged by the model."""
    if d.status in BROKEN:
        return d.status
    return "ok" if not j.beyond else "diverged"


def local_fault(local_ratio: float, run_ratios: Sequence[float], layer: bool = True) -> bool:
    """Is a segment's own error (÷ its budget) a local fault? Beyond the budget and `FAR` beyond it, or, for a `layer`,
    `DOMINANCE`× the median of the run's own errors `run_ratios` (three or more; see the module)."""
    if not local_ratio > 1:
        return False
    if local_ratio >= FAR or math.isinf(local_ratio):
        return True
    others = sorted(r for r in run_ratios if math.isfinite(r) and r > 0)
    if not layer or len(others) < 3:
        return False
    return local_ratio >= DOMINANCE * others[len(others) // 2]


# -- detections --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxFlip:
    """A box a post-process decision at its threshold made on one side and not the other, both sides holding its
    proposal over the score threshold: NMS (one side kept it, the other's suppressed it: `kind` "IoU", or
    "distance" in metres, the pair's figure on each side against the threshold) or the class remapping by area
    (`kind` "area", m²: its label differs, so one box is lost and another added: `boxes` 2). `shift_m` and
    `score_change`: how far the boxes involved moved and were rescored between the sides."""

    kind: str
    reference: float
    candidate: float
    threshold: float
    shift_m: float  # the larger centre shift of the boxes involved
    score_change: float  # the larger |Δscore| of them
    label: str
    boxes: int = 1  # lost/added boxes it makes

    def text(self) -> str:
        what = "class remapping by area" if self.kind == "area" else f"NMS {self.kind}"
        return (f"{self.label}: {what} {self.reference:.4g} -> {self.candidate:.4g} against its threshold "
                f"{self.threshold:g}, moved {self.shift_m:.2g} m")

    def to_json(self) -> dict:
        return dict(vars(self))


@dataclass(frozen=True)
class YawTurn:
    """One matched box's yaw change with the reference's own conditioning of that yaw (see the module):
    `rot_norm` = |(sin, cos)| of the reference's rot head at the box's peak, `rot_rms` = that rot map's RMS (NaN
    where unknown: boxes not decoded from head maps here). `label`: the box's class; `x`, `y`: its centre (m)."""

    change: float  # radians, wrapped to [0, pi]
    rot_norm: float
    rot_rms: float
    label: str
    x: float
    y: float

    @property
    def gain(self) -> float:
        """Radians of turn per unit of the rot map's relative RMS error: rot_rms / |r|, at least `YAW_FACTOR`."""
        if not (math.isfinite(self.rot_norm) and math.isfinite(self.rot_rms)) or self.rot_rms <= 0:
            return YAW_FACTOR
        return max(YAW_FACTOR, self.rot_rms / self.rot_norm if self.rot_norm > 0 else math.inf)

    def explained(self, b: float) -> float:
        """The turn a precision of budget `b` explains for this box (radians; π or more: any turn)."""
        return b * self.gain

    def sensitive(self, b: float) -> bool:
        """Turned beyond a well-defined yaw's limit, within what its own conditioning explains."""
        return YAW_FACTOR * b < self.change <= self.explained(b)

    def text(self, b: float) -> str:
        explains = "any turn" if self.explained(b) >= math.pi else f"up to {self.explained(b):.2g} rad"
        return (f"{self.label} at ({self.x:.1f}, {self.y:.1f}) m turned {self.change:.3g} rad: its yaw is "
                f"ill-conditioned in the reference (|(sin, cos)| {self.rot_norm:.2g} where the rot map's RMS is "
                f"{self.rot_rms:.3g}; the rot map's noise explains {explains})")

    def to_json(self) -> dict:
        return dict(vars(self))

    @classmethod
    def from_json(cls, d: dict) -> "YawTurn":
        return cls(**{k: float(v) if k != "label" else v for k, v in d.items()})  # non-finite: "nan" strings


def yaw_turns_of(changes: Sequence[float], rot_norms: Sequence[float], rot_rms: float, labels: Sequence[str],
              centres: Sequence[tuple[float, float]]) -> tuple[YawTurn, ...]:
    """The turns a judgement needs of the matched boxes (row-aligned figures): the largest, and the largest against
    its box's conditioning (`YawTurn.gain`, whatever the precision); one where they are the same box."""
    if not len(changes):
        return ()
    turns = [YawTurn(float(c), float(n), float(rot_rms), str(lab), float(x), float(y))
             for c, n, lab, (x, y) in zip(changes, rot_norms, labels, centres)]
    largest = max(range(len(turns)), key=lambda i: turns[i].change)
    least_explained = max(range(len(turns)), key=lambda i: turns[i].change / turns[i].gain)
    return tuple(turns[i] for i in dict.fromkeys((largest, least_explained)))


@dataclass(frozen=True)
class BoxJudgement:
    """The boxes of a candidate against the reference's, judged by the precision: boxes lost/added `at_threshold`
    (explained by the precision) and `beyond` it, whether a matched box moved beyond the precision, and the boxes
    whose turn only their own conditioning explains (`sensitive`)."""

    outcome: Outcome
    changed: int  # boxes lost + added
    at_threshold: int
    beyond: int
    matched_beyond: bool
    score_band: float
    reason: str
    sensitive: tuple[YawTurn, ...] = ()

    def to_json(self) -> dict:
        return {"outcome": self.outcome.value, "boxes_changed": self.changed, "at_threshold": self.at_threshold,
                "beyond_threshold_band": self.beyond, "matched_beyond": self.matched_beyond,
                "score_band": self.score_band, "reason": self.reason,
                "sensitive_boxes": [t.to_json() for t in self.sensitive]}


def score_cuts(score_threshold: float, cap: int | None, *kept: Sequence[float]) -> tuple[float, ...]:
    """Where boxes are cut by score: the threshold, and the lowest kept score of each side that holds `cap` boxes
    (a top-K: the K-th box's score is a decision level like the threshold; `judge_boxes` reads a box that crossed
    it, or a matched pair the cap chose between, as a flip)."""
    return (float(score_threshold),) + tuple(float(min(s)) for s in kept if cap and len(s) >= cap and len(s))


def judge_boxes(precision: str, *, lost_scores: Sequence[float], added_scores: Sequence[float],
                cuts: Sequence[float], max_centre_shift: float, max_score_change: float, max_yaw_change: float,
                cell_m: float, unit: float | None = None, extent_m: float = 0.0,
                yaw_turns: Sequence[YawTurn] = (), graph_span_m: float = 0.0,
                box_flips: Sequence[BoxFlip] = ()) -> BoxJudgement:
    """Boxes judged against `precision` (`unit`: its rounding unit where already known, e.g. INT8's at the heatmap);
    `cuts`: the score levels boxes are cut at (`score_cuts`), the score threshold first. `extent_m`: the largest
    |coordinate| a centre takes (the point cloud range): boxes are decoded in float32 on both sides, so a centre
    may move by float32's rounding of its coordinate whatever the candidate's precision. `yaw_turns`: the matched
    boxes' turns with their conditioning (`yaw_turns_of`); without them `max_yaw_change` is held to `YAW_FACTOR` ×
    the budget. `graph_span_m`: the span of the absolute centre coordinates the candidate's graph itself computes
    (TransFusion-L adds each query's cell position to its offset in the graph: a 16-bit float holds 150.3 cells as
    150.25), so a centre may move by one rounding of its coordinate in a float format (u · span); 0 where the
    coordinates are made in float32 after the graph (CenterPoint's decode) or the format is INT8 (Q/DQ around the
    convs and matmuls, the add in float). `box_flips`: lost/added boxes a post-process decision at its threshold made
    (`BoxFlip`: NMS, class remapping); one whose boxes moved within the centre limit and were rescored within the
    budget is explained."""
    b = growth(precision) * (unit if unit is not None else unit_roundoff(precision))
    in_graph = unit_roundoff(precision) * graph_span_m if precision in ("fp16", "bf16") else 0.0
    centre_limit = b * cell_m + GROWTH * unit_roundoff("fp32") * extent_m + in_graph
    scores = list(lost_scores) + list(added_scores)
    near = sum(1 for s in scores if any(abs(s - c) <= b for c in cuts))
    at_nms, room = [], len(scores) - near
    for f in box_flips:
        if f.shift_m <= centre_limit and f.score_change <= b and f.boxes <= room:
            at_nms.append(f)
            room -= f.boxes
    near += sum(f.boxes for f in at_nms)
    far = len(scores) - near
    moved = []
    # not the same peak: NMS, or a full side's box cap (`capped`: a decision like the threshold, whatever the
    # distance), kept the other of two neighbouring boxes whose scores tie within the band
    capped = len(cuts) > 1
    swapped = max_centre_shift > max(centre_limit, 0.0 if capped else NEIGHBOUR * cell_m) and max_score_change <= b
    if swapped:
        pass
    elif max_centre_shift > centre_limit:
        moved.append(f"a centre moved {max_centre_shift:.3g} m (> {centre_limit:.2g})")
    if max_score_change > b:
        moved.append(f"a score changed {max_score_change:.3g} (> {b:.2g})")
    turns = list(yaw_turns) or [YawTurn(max_yaw_change, math.nan, math.nan, "a box", math.nan, math.nan)]
    turned = [t for t in turns if t.change > t.explained(b)] if not swapped else []
    sensitive = tuple(t for t in turns if t.sensitive(b)) if not swapped else ()
    if turned:
        t = max(turned, key=lambda t: t.change / t.gain)
        where = f" ({t.label} at ({t.x:.1f}, {t.y:.1f}) m, |(sin, cos)| {t.rot_norm:.2g})" if yaw_turns else ""
        moved.append(f"a yaw turned {t.change:.3g} rad (> {t.explained(b):.2g}){where}")
    if far or moved:
        why = [f"{far} box(es) lost/added beyond {b:.2g} of the score threshold"] if far else []
        return BoxJudgement(Outcome.DEGRADED, len(scores), near, far, bool(moved), b, "; ".join(why + moved))
    reason = (f"{len(scores)} box(es) lost/added, all within {b:.2g} of the score threshold {cuts[0]:g}"
              + (" or the box cap's cut (a flip at the top-K, not degradation)" if capped else "")
              + (f" or made by a post-process decision at its threshold ({'; '.join(f.text() for f in at_nms[:2])})"
                 if at_nms else "") if scores else "no box lost or added")
    if swapped:
        reason += (f"; a matched box is a neighbouring peak ({max_centre_shift:.2g} m away): "
                   f"{'NMS or the box cap' if capped else 'NMS'} kept the other of two boxes whose scores tie within "
                   f"{b:.2g}")
    if sensitive:
        reason += "; " + "; ".join(t.text(b) for t in sensitive)
    return BoxJudgement(Outcome.WITHIN_PRECISION, len(scores), near, 0, False, b, reason, sensitive)


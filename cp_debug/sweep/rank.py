"""Ranking and classing the frames of a sweep.

Each probe's error (relative RMSE against the reference) is put next to that probe's own median over the
frames (`ratio`). A diverging frame is a **layer-local fault** where some probe's ratio reaches `LOCAL_FACTOR`;
the layer named is the first such probe in pipeline order (the onset: downstream probes inherit the error). A
diverging frame with every ratio below the factor is **uniform noise**: each probe at its usual error, and
what changed are borderline boxes.

Why 10: rounding noise is the same process on every frame, so a probe's error varies little across frames
(on the tiny preset, ort-cpu-fp16 against torch over held-out frames: every ratio within 0.8–1.3; ort FP32
within 0.5–2), while a fault that fires on some frames only moves its probe by orders of magnitude. A factor
of 10 sits an order of magnitude above the noise's spread and below any fault that changes boxes.
`ERROR_FLOOR` keeps a probe that is usually exact (median 0) from turning float32 rounding into a fault.

The outcome (compare/noise.py): a frame's candidate is *diverged* where a probe holds NaN/Inf or the wrong shape,
or where its class is layer-local at a probe beyond the candidate's precision (the worker's judgement says which
probes are: `ProbeStat.status`); *degraded* where probes or boxes lie beyond the precision otherwise; else
*within precision*. With `--tolerance-mode fixed` every flagged frame is diverged, as before.

Frames are ranked by detection change (boxes lost + added, then any change at all, then the proposals flipped
where a recipe's glue decides some), then by their worst probe's ratio; failed frames come last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cp_debug.compare.noise import Outcome, worst as worst_outcome
from cp_debug.sweep.records import FLAGGED, CandidateFrame, FrameResult

LOCAL_FACTOR = 10.0
ERROR_FLOOR = 1e-5  # relative RMSE: about 100 float32 ulps; below it an error is rounding whatever the median


@dataclass(frozen=True)
class ProbeSpread:
    """One probe of one candidate across the frames: median, p95 and max relative RMSE, the worst frames."""

    candidate: str
    probe: str
    order: int
    median: float
    p95: float
    max: float
    frames: int
    worst: tuple[str, ...]  # tokens of the worst frames, worst first (at most 3)


@dataclass(frozen=True)
class CandidateVerdict:
    """One candidate on one frame: its class and the probes that explain it."""

    candidate: str
    klass: str | None  # local | uniform | None (not diverged)
    worst_probe: str | None
    worst_ratio: float
    local_probe: str | None  # the first probe at LOCAL_FACTOR x its median or more
    first_divergent: str | None  # the first probe beyond tolerance
    lost: int
    added: int
    changed: bool
    diverged: bool
    outcome: Outcome = Outcome.WITHIN_PRECISION
    reason: str | None = None
    flips: int = 0  # the decided glue's choices made otherwise (TransFusion-L's top-K proposals)


@dataclass(frozen=True)
class RankedFrame:
    token: str
    index: int
    rank: int
    status: str  # within_precision | degraded | diverged (`outcome`'s value, the local class counted) | failed
    reason: str | None
    num_points: int
    klass: str | None
    candidate: str | None  # the candidate that ranks this frame (the worst one)
    verdicts: tuple[CandidateVerdict, ...] = ()
    bisected: bool = False  # the worst frames' full bisect ran (explain.bisect_worst)
    root_cause: str | None = None  # filled for bisected frames
    hint: str | None = None  # the bisect's hint at the root cause
    near_tie: tuple[str, ...] = ()  # no single root: the layers that each tip a near tie (`RootCause.tipped_by`)
    outcome: Outcome | None = None  # the worst of its candidates' (None: failed)

    @property
    def flagged(self) -> bool:
        """Beyond the precision (degraded or diverged): the frames classed and bisected."""
        return self.status in FLAGGED

    @property
    def worst(self) -> CandidateVerdict | None:
        return next((v for v in self.verdicts if v.candidate == self.candidate), None)


def spreads(results: list[FrameResult]) -> dict[tuple[str, str], ProbeSpread]:
    """(candidate, probe) -> its spread over the frames that ran."""
    values: dict[tuple[str, str], list[tuple[float, str, int]]] = {}
    for r in results:
        for c in r.candidates:
            for p in c.probes:
                if p.status != "missing" and math.isfinite(p.rel_rmse):
                    values.setdefault((c.candidate, p.probe), []).append((p.rel_rmse, r.token, p.order))
                elif p.status != "missing":  # NaN / Inf in the candidate: as bad as it gets
                    values.setdefault((c.candidate, p.probe), []).append((math.inf, r.token, p.order))
    out = {}
    for key, vals in values.items():
        arr = np.array([v for v, _, _ in vals], dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        base = finite if finite.size else arr
        worst = tuple(t for _, t, _ in sorted(vals, key=lambda v: -v[0])[:3])
        out[key] = ProbeSpread(key[0], key[1], vals[0][2], float(np.median(base)), float(np.percentile(base, 95)),
                               float(arr.max()), len(vals), worst)
    return out


def ratio(err: float, median: float) -> float:
    if math.isnan(err):
        return math.inf
    return err / max(median, ERROR_FLOOR)


def verdict(c: CandidateFrame, spread: dict[tuple[str, str], ProbeSpread], factor: float = LOCAL_FACTOR,
            mode: str = "model") -> CandidateVerdict:
    ratios = []
    for p in sorted(c.probes, key=lambda p: p.order):
        s = spread.get((c.candidate, p.probe))
        if p.status == "missing" or s is None:
            continue
        err = p.rel_rmse if p.nan == 0 and p.inf == 0 else math.inf
        ratios.append((p.probe, ratio(err, s.median)))
    worst = max(ratios, key=lambda x: x[1], default=(None, 0.0))
    # by the noise model, only a probe beyond its precision's noise can be a layer's fault
    beyond = {p.probe for p in c.probes if p.status not in ("ok", "missing")}
    local = next((name for name, r in ratios if r >= factor and (mode == "fixed" or name in beyond)), None)
    first = next((p.probe for p in sorted(c.probes, key=lambda p: p.order) if p.status not in ("ok", "missing")), None)
    d = c.detections
    klass = None if not c.diverged else ("local" if local is not None else "uniform")
    outcome = Outcome(c.outcome) if c.outcome else (Outcome.DIVERGED if c.diverged else Outcome.WITHIN_PRECISION)
    reason = c.reason
    if klass == "local" and outcome is not Outcome.DIVERGED:
        outcome = Outcome.DIVERGED
        reason = f"layer-local: {local} at {dict(ratios)[local]:.3g}× its median over the frames; {reason}"
    # a decision flipped ranks before an error (a map's scattered near ties at its threshold are none: decisions.py)
    flips = d.flips + sum(x.flipped for x in c.decisions if getattr(x, "decisive", x.changed))
    return CandidateVerdict(c.candidate, klass, worst[0], float(worst[1]), local, first, d.lost, d.added, d.changed,
                            c.diverged, outcome, reason, flips)



def _key(v: CandidateVerdict) -> tuple:
    return (v.lost + v.added, int(v.changed), v.flips, v.worst_ratio if math.isfinite(v.worst_ratio) else 1e300)


def rank_frames(results: list[FrameResult], factor: float = LOCAL_FACTOR, mode: str = "model"
                ) -> tuple[list[RankedFrame], dict]:
    """The frames, worst first, each with its class and outcome; and the probe spreads they were judged by."""
    spread = spreads(results)
    scored = []
    for r in results:
        if r.status == "failed":
            scored.append(((-1, 0, 0, 0.0), r, (), None))
            continue
        vs = tuple(verdict(c, spread, factor, mode) for c in r.candidates)
        worst = max(vs, key=_key) if vs else None
        scored.append((_key(worst) if worst else (0, 0, 0, 0.0), r, vs, worst))
    scored.sort(key=lambda x: (tuple(-k for k in x[0]), x[1].index))
    ranked = []
    for rank, (_, r, vs, worst) in enumerate(scored, start=1):
        klass = None
        if r.flagged:
            klass = "local" if any(v.klass == "local" for v in vs) else "uniform"
        outcome = None if r.status == "failed" else worst_outcome(v.outcome for v in vs)
        ranked.append(RankedFrame(r.token, r.index, rank, outcome.value if outcome is not None else "failed", r.reason,
                                  r.num_points, klass, worst.candidate if worst else None, vs, outcome=outcome))
    return ranked, spread

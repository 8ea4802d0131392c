"""The verdict of `cpdebug eval` per candidate: its boxes against the reference's, judged by the noise model.

Each scan's detection-level diff (`detection_diff.SceneDiff`) is judged by `compare.noise.judge_boxes` at the
candidate's precision, as bisect and sweep judge a frame's boxes: boxes lost or added whose score lies within the
precision's band of a cut (the score threshold, a full side's lowest kept score) are explained by the precision;
boxes lost or added beyond it, or matched boxes moved, rescored or turned beyond it (a turn weighed by how well the
reference's head maps define that yaw, where its boxes were decoded here), make the scan degraded. The
candidate is diverged where its boxes hold NaN/Inf or where it gives no box at all on scans where the reference
gives some (NaN head maps decode to no box; an interface mix-up looks the same). The mAP/NDS change goes with the
verdict as figures; the gates (`gates.py`) judge those.

Precision: the coarser of reference and candidate (a backend's spec); a deployment's own detections file is
judged at FP16's (the precision CenterPoint deployments run at: TensorRT FP16), which the JSON says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from cp_debug.compare import noise
from cp_debug.eval.boxes import SampleBoxes
from cp_debug.eval.detection_diff import CandidateDiff

FILE_PRECISION = "fp16"  # a detections file's: what a CenterPoint deployment runs at


@dataclass(frozen=True)
class CandidateVerdict:
    """One candidate over every scan: `outcome` (the worst scan's, or diverged), why, the precision it was judged
    at, how many scans lie beyond it, and the figures that go with it (mAP/NDS change vs the reference)."""

    candidate: str
    precision: str
    outcome: noise.Outcome
    reason: str
    scans: int
    scans_beyond: int  # scans not within precision
    boxes_changed: int  # lost + added, over every scan
    at_threshold: int  # of those, explained by the precision (at a score cut)
    worst_scan: str | None
    map_change: float
    nds_change: float

    def to_json(self) -> dict:
        return {"candidate": self.candidate, "precision": self.precision, "outcome": self.outcome.value,
                "reason": self.reason, "scans": self.scans, "scans_beyond_precision": self.scans_beyond,
                "boxes_changed": self.boxes_changed, "at_threshold": self.at_threshold,
                "worst_scan": self.worst_scan, "map_change": self.map_change, "nds_change": self.nds_change}

    def text(self) -> str:
        return (f"{self.candidate}: {self.outcome.words} (judged at {self.precision}; mAP {self.map_change:+.4f}, "
                f"NDS {self.nds_change:+.4f}): {self.reason}")


def coarser(a: str, b: str) -> str:
    """The precision of `a` and `b` whose rounding is the larger (what a pair of them is judged at)."""
    return max((a, b), key=noise.unit_roundoff)


def judge_candidate(candidate: str, precision: str, reference: Mapping[str, SampleBoxes],
                    detections: Mapping[str, SampleBoxes], diff: CandidateDiff, cfg, *, map_change: float,
                    nds_change: float, cut: tuple[float, int | None] | None = None) -> CandidateVerdict:
    """`candidate`'s boxes (`detections`, by token) against the `reference`'s, scan by scan (`diff.scenes`); `cut`:
    (score threshold, cap) where the boxes are cut (default `cfg`'s)."""
    from cp_debug.lidar.box_verdict import judge_boxes_of

    figures = dict(map_change=_finite(map_change), nds_change=_finite(nds_change))
    n = len(diff.scenes)
    changed = sum(s.missing + s.extra for s in diff.scenes)
    broken = [t for t, sb in detections.items() if t in reference and not _finite_boxes(sb)]
    if broken:
        return CandidateVerdict(candidate, precision, noise.Outcome.DIVERGED,
                                f"NaN/Inf in the boxes or scores of {len(broken)} scan(s) (first {broken[0]})", n,
                                len(broken), changed, 0, broken[0], **figures)
    total = diff.total
    if total.reference and not total.candidate:
        return CandidateVerdict(candidate, precision, noise.Outcome.DIVERGED,
                                f"no box on any scan where the reference gives {total.reference} (NaN head maps "
                                "decode to none; or the outputs are read wrongly)", n, n, changed, 0,
                                diff.scenes[0].token if diff.scenes else None, **figures)
    empty = SampleBoxes.empty()
    judged = []
    for s in diff.scenes:
        ref_scores = _scores(reference.get(s.token, empty))
        cand_scores = _scores(detections.get(s.token, empty))
        cuts = noise.score_cuts(*(cut or (cfg.score_threshold, cfg.post_max_size)), ref_scores, cand_scores)
        judged.append((s, judge_boxes_of(cfg, precision, lost_scores=s.missing_scores, added_scores=s.extra_scores,
                                         cuts=cuts, max_centre_shift=s.max_centre_shift,
                                         max_score_change=s.max_abs_score_change,
                                         max_yaw_change=s.max_yaw_change, yaw_turns=s.yaw_turns)))
    beyond = [(s, j) for s, j in judged if j.outcome is not noise.Outcome.WITHIN_PRECISION]
    near = sum(j.at_threshold for _, j in judged)
    outcome = noise.worst(j.outcome for _, j in judged)
    if beyond:
        s, j = max(beyond, key=lambda x: (x[1].beyond, x[0].rank_key))
        reason = f"{len(beyond)} of {n} scan(s) beyond {precision}'s noise; worst {s.token}: {j.reason}"
        return CandidateVerdict(candidate, precision, outcome, reason, n, len(beyond), changed, near, s.token,
                                **figures)
    reason = (f"every scan within {precision}'s noise: {changed} box(es) lost/added, all at a score cut"
              if changed else f"every scan within {precision}'s noise: no box lost or added")
    sensitive = [f"{s.token}: {t.text(j.score_band)}" for s, j in judged for t in j.sensitive]
    if sensitive:
        reason += "; " + "; ".join(sensitive[:3]) + (f"; and {len(sensitive) - 3} more" if len(sensitive) > 3 else "")
    return CandidateVerdict(candidate, precision, outcome, reason, n, 0, changed, near, None, **figures)


def _scores(sb: SampleBoxes) -> np.ndarray:
    return np.asarray(sb.scores if sb.scores is not None else np.zeros(len(sb)), np.float64)


def _finite_boxes(sb: SampleBoxes) -> bool:
    return bool(np.isfinite(sb.boxes).all() and (sb.scores is None or np.isfinite(sb.scores).all()))


def _finite(x: float) -> float:
    return float(x) if x is not None and math.isfinite(x) else math.nan

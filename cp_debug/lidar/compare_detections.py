"""Compare two sets of boxes: greedy nuScenes-style matching by BEV centre distance within each class.

Boxes of `a` (the reference) are taken in descending score; each takes the nearest unmatched box of `b` with
the same label within `max_dist` metres. The result counts matches and reports score, centre, size, yaw and
velocity differences over the matched pairs, and the turns a judgement needs with how well the reference defines
each yaw (`compare.noise.YawTurn`: |(sin, cos)| at the box's peak against the rot map's RMS, where `a` was decoded
from head maps here).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from cp_debug.compare.noise import YawTurn, yaw_turns_of
from cp_debug.lidar.boxes import Detections


@dataclass(frozen=True)
class MatchedPair:
    index_a: int
    index_b: int
    label: int
    centre_dist: float  # BEV (x, y) distance, metres
    z_diff: float
    score_diff: float  # b - a
    size_diff: float  # max |l, w, h| difference, metres
    yaw_diff: float  # |angle difference| wrapped to [0, pi]
    vel_diff: float  # |(vx, vy) difference|, m/s
    ref_rot_norm: float = math.nan  # |(sin, cos)| of the reference's rot head at its peak (NaN: not known)


def _stats(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    arr = np.abs(np.asarray(values, dtype=np.float64))
    return float(arr.max()), float(arr.mean())


UNCHANGED_TOL = 1e-3  # metres of centre shift, score, radians of yaw


def unchanged(lost: int, added: int, max_centre_shift: float, max_abs_score_change: float, max_yaw_change: float,
              tol: float = UNCHANGED_TOL) -> bool:
    """No box lost or added, and none moved, rescored or turned by `tol` or more: the divergence changes no
    detection (the test of `cpdebug eval`'s diagnosis and of the bisect's detection verdict)."""
    return (lost == 0 and added == 0 and max_centre_shift < tol and max_abs_score_change < tol
            and max_yaw_change < tol)


@dataclass(frozen=True)
class DetectionDiff:
    num_a: int
    num_b: int
    max_dist: float
    matched: tuple[MatchedPair, ...]
    unmatched_a: tuple[int, ...]
    unmatched_b: tuple[int, ...]
    max_score_diff: float
    mean_score_diff: float
    max_centre_dist: float
    mean_centre_dist: float
    max_z_diff: float
    max_size_diff: float
    mean_size_diff: float
    max_yaw_diff: float
    mean_yaw_diff: float
    max_vel_diff: float
    yaw_turns: tuple[YawTurn, ...] = ()  # the largest turn and the one least explained by its yaw's conditioning

    @property
    def num_matched(self) -> int:
        return len(self.matched)

    @property
    def all_matched(self) -> bool:
        return not self.unmatched_a and not self.unmatched_b

    @property
    def unchanged(self) -> bool:
        return unchanged(len(self.unmatched_a), len(self.unmatched_b), self.max_centre_dist, self.max_score_diff,
                         self.max_yaw_diff)

    def summary(self) -> str:
        return (
            f"{self.num_matched} matched of {self.num_a} / {self.num_b} boxes "
            f"({len(self.unmatched_a)} only in a, {len(self.unmatched_b)} only in b); "
            f"max |dscore| {self.max_score_diff:.3g}, max centre {self.max_centre_dist:.3g} m, "
            f"max size {self.max_size_diff:.3g} m, max yaw {self.max_yaw_diff:.3g} rad"
        )

    def to_json(self) -> dict:
        d = asdict(self)
        d["matched"] = [asdict(m) for m in self.matched]
        d["unmatched_a"] = list(self.unmatched_a)
        d["unmatched_b"] = list(self.unmatched_b)
        return d


def _wrap(angle: float) -> float:
    return abs((angle + math.pi) % (2 * math.pi) - math.pi)


def compare_detections(a: Detections, b: Detections, max_dist: float = 2.0,
                       class_names: tuple[str, ...] = ()) -> DetectionDiff:
    """Match `b`'s boxes to the reference `a`'s and measure the differences (`class_names`: the labels' names in
    `yaw_turns`, where `a` has none)."""
    rot_norm = getattr(a, "rot_norm", None)
    matched: list[MatchedPair] = []
    used_b = np.zeros(len(b), dtype=bool)
    matched_a = np.zeros(len(a), dtype=bool)
    for ia in np.argsort(-a.scores, kind="stable"):
        candidates = np.nonzero((b.labels == a.labels[ia]) & ~used_b)[0]
        if candidates.size == 0:
            continue
        d = np.hypot(b.boxes[candidates, 0] - a.boxes[ia, 0], b.boxes[candidates, 1] - a.boxes[ia, 1])
        j = int(np.argmin(d))
        if d[j] > max_dist:
            continue
        ib = int(candidates[j])
        used_b[ib] = True
        matched_a[ia] = True
        ba, bb = a.boxes[ia].astype(np.float64), b.boxes[ib].astype(np.float64)
        matched.append(
            MatchedPair(
                index_a=int(ia),
                index_b=ib,
                label=int(a.labels[ia]),
                centre_dist=float(d[j]),
                z_diff=float(bb[2] - ba[2]),
                score_diff=float(b.scores[ib]) - float(a.scores[ia]),
                size_diff=float(np.abs(bb[3:6] - ba[3:6]).max()),
                yaw_diff=_wrap(float(bb[6] - ba[6])),
                vel_diff=float(np.hypot(bb[7] - ba[7], bb[8] - ba[8])),
                ref_rot_norm=float(rot_norm[ia]) if rot_norm is not None else math.nan,
            )
        )
    score = _stats([m.score_diff for m in matched])
    centre = _stats([m.centre_dist for m in matched])
    size = _stats([m.size_diff for m in matched])
    yaw = _stats([m.yaw_diff for m in matched])
    return DetectionDiff(
        num_a=len(a),
        num_b=len(b),
        max_dist=float(max_dist),
        matched=tuple(matched),
        unmatched_a=tuple(int(i) for i in np.nonzero(~matched_a)[0]),
        unmatched_b=tuple(int(i) for i in np.nonzero(~used_b)[0]),
        max_score_diff=score[0],
        mean_score_diff=score[1],
        max_centre_dist=centre[0],
        mean_centre_dist=centre[1],
        max_z_diff=_stats([m.z_diff for m in matched])[0],
        max_size_diff=size[0],
        mean_size_diff=size[1],
        max_yaw_diff=yaw[0],
        mean_yaw_diff=yaw[1],
        max_vel_diff=_stats([m.vel_diff for m in matched])[0],
        yaw_turns=_turns(a, matched, class_names or tuple(getattr(a, "class_names", ()) or ())),
    )


def _turns(a, matched: list[MatchedPair], names: tuple[str, ...]) -> tuple[YawTurn, ...]:
    rot_rms = getattr(a, "rot_rms", None)
    return yaw_turns_of([m.yaw_diff for m in matched], [m.ref_rot_norm for m in matched],
                        math.nan if rot_rms is None else float(rot_rms),
                        [names[m.label] if m.label < len(names) else str(m.label) for m in matched],
                        [(float(a.boxes[m.index_a, 0]), float(a.boxes[m.index_a, 1])) for m in matched])

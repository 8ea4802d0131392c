"""Detection-level diff of a candidate backend against the reference on the same scans.

Per scan, boxes are matched within each class by BEV centre distance (`compare_detections`: the reference's
boxes in descending score take the nearest unmatched candidate box within `max_dist`). Summed over scans:
matched / missing (reference only) / extra (candidate only) per class, centre shift, score and yaw change,
and the scans where the two differ most. The matched pairs are kept (not serialised) for the diagnoses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np

from cp_debug.eval.boxes import SampleBoxes
from cp_debug.lidar.compare_detections import compare_detections, unchanged


@dataclass(frozen=True)
class ClassDiff:
    name: str
    reference: int
    candidate: int
    matched: int
    missing: int
    extra: int
    mean_centre_shift: float
    max_centre_shift: float
    mean_score_change: float  # candidate - reference, signed mean
    max_abs_score_change: float
    mean_yaw_change: float  # |wrapped|, radians
    max_yaw_change: float


@dataclass(frozen=True)
class SceneDiff:
    token: str
    reference: int
    candidate: int
    matched: int
    missing: int
    extra: int
    max_centre_shift: float
    max_abs_score_change: float
    max_yaw_change: float = 0.0
    missing_scores: tuple[float, ...] = ()  # the reference's scores of the boxes the candidate lost
    extra_scores: tuple[float, ...] = ()  # the candidate's scores of the boxes it added
    yaw_turns: tuple = ()  # compare.noise.YawTurn: the turns that decide, with the reference's conditioning of each

    @property
    def rank_key(self) -> tuple:
        return (self.missing + self.extra, self.max_centre_shift, self.max_abs_score_change)


@dataclass(frozen=True)
class MatchedBoxes:
    """All matched pairs over every scan, row-aligned: reference and candidate boxes (P, 9), scores, labels."""

    ref_boxes: np.ndarray
    cand_boxes: np.ndarray
    ref_scores: np.ndarray
    cand_scores: np.ndarray
    labels: np.ndarray
    centre_shift: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,) BEV centre distance, metres
    yaw_change: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,) |wrapped yaw difference|, radians


@dataclass(frozen=True)
class CandidateDiff:
    reference: str
    candidate: str
    max_dist: float
    per_class: tuple[ClassDiff, ...]
    total: ClassDiff
    scenes: tuple[SceneDiff, ...]  # worst first
    pairs: MatchedBoxes = field(repr=False, compare=False)
    missing_ref_scores: np.ndarray = field(repr=False, compare=False)  # scores of reference boxes left unmatched

    @property
    def unchanged(self) -> bool:
        """Every box kept, none added, and no box moved, rescored or turned measurably."""
        t = self.total
        return unchanged(t.missing, t.extra, t.max_centre_shift, t.max_abs_score_change, t.max_yaw_change)

    def worst_scenes(self, k: int = 5) -> tuple[SceneDiff, ...]:
        return tuple(s for s in self.scenes[:k] if s.rank_key > (0, 0.0, 0.0))

    def to_json(self, top_scenes: int = 10) -> dict:
        from dataclasses import asdict

        return {"reference": self.reference, "candidate": self.candidate, "max_dist": self.max_dist,
                "unchanged": self.unchanged, "total": asdict(self.total),
                "per_class": {c.name: asdict(c) for c in self.per_class},
                "worst_scenes": [asdict(s) for s in self.scenes[:top_scenes]]}


def _class_diff(name: str, n_ref: int, n_cand: int, shifts, dscores, dyaws) -> ClassDiff:
    def stat(values, fn, absolute=True):
        if not len(values):
            return 0.0
        arr = np.abs(values) if absolute else np.asarray(values)
        return float(fn(arr))

    matched = len(shifts)
    return ClassDiff(name, n_ref, n_cand, matched, n_ref - matched, n_cand - matched,
                     stat(shifts, np.mean), stat(shifts, np.max), stat(dscores, np.mean, absolute=False),
                     stat(dscores, np.max), stat(dyaws, np.mean), stat(dyaws, np.max))


def diff_detections(reference: Mapping[str, SampleBoxes], candidate: Mapping[str, SampleBoxes],
                    class_names: Sequence[str], *, reference_name: str = "reference",
                    candidate_name: str = "candidate", max_dist: float = 2.0) -> CandidateDiff:
    """Match `candidate` to `reference` scan by scan (tokens of the reference; a missing scan is empty)."""
    empty = SampleBoxes.empty()
    rows = {k: [] for k in ("ref", "cand", "rs", "cs", "lab", "shift", "yaw")}
    missing_scores, scenes = [], []
    n_ref = np.zeros(len(class_names), np.int64)
    n_cand = np.zeros(len(class_names), np.int64)
    for token in reference:
        a, b = reference[token], candidate.get(token, empty)
        n_ref += np.bincount(a.labels, minlength=len(class_names))[: len(class_names)]
        n_cand += np.bincount(b.labels, minlength=len(class_names))[: len(class_names)]
        d = compare_detections(a, b, max_dist=max_dist, class_names=tuple(class_names))
        for m in d.matched:
            rows["ref"].append(a.boxes[m.index_a])
            rows["cand"].append(b.boxes[m.index_b])
            rows["rs"].append(a.scores[m.index_a])
            rows["cs"].append(b.scores[m.index_b])
            rows["lab"].append(m.label)
            rows["shift"].append(m.centre_dist)
            rows["yaw"].append(m.yaw_diff)
        missing_scores.extend(float(a.scores[i]) for i in d.unmatched_a)
        scenes.append(SceneDiff(token, len(a), len(b), d.num_matched, len(d.unmatched_a), len(d.unmatched_b),
                                d.max_centre_dist, d.max_score_diff, d.max_yaw_diff,
                                tuple(float(a.scores[i]) for i in d.unmatched_a),
                                tuple(float(b.scores[i]) for i in d.unmatched_b) if b.scores is not None else (),
                                d.yaw_turns))
    pairs = MatchedBoxes(np.asarray(rows["ref"], np.float64).reshape(-1, 9),
                         np.asarray(rows["cand"], np.float64).reshape(-1, 9),
                         np.asarray(rows["rs"], np.float64), np.asarray(rows["cs"], np.float64),
                         np.asarray(rows["lab"], np.int64))
    shift, yaw = np.asarray(rows["shift"], np.float64), np.asarray(rows["yaw"], np.float64)
    pairs = replace(pairs, centre_shift=shift, yaw_change=yaw)
    dscore = pairs.cand_scores - pairs.ref_scores
    per_class = tuple(
        _class_diff(c, int(n_ref[i]), int(n_cand[i]), shift[pairs.labels == i], dscore[pairs.labels == i],
                    yaw[pairs.labels == i])
        for i, c in enumerate(class_names)
    )
    total = _class_diff("all", int(n_ref.sum()), int(n_cand.sum()), shift, dscore, yaw)
    scenes.sort(key=lambda s: s.rank_key, reverse=True)
    return CandidateDiff(reference_name, candidate_name, float(max_dist), per_class, total, tuple(scenes), pairs,
                         np.asarray(missing_scores, np.float64))

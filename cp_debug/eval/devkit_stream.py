"""nuscenes-devkit's `accumulate` cut at the sample, so that a sweep works it out frame by frame while frames still run.

The devkit's `accumulate(gt, pred, class, center_distance, threshold)` does two things. It walks every detection of
the class in descending score order (ties: the later box first) and matches it greedily to the nearest ground-truth
box of *its own sample* not yet taken — so which detection matches which box is decided within each sample, and
the global score order only orders each sample's detections among themselves. Then it sums the matches up in that
global order: cumulated TP and FP counts, precision and recall on 101 recall points, the matched pairs' errors as
running means interpolated on the confidences.

A sweep cannot call `accumulate` before its last frame, and one call of the busiest class was the metrics' tail
after the frames (1.0-1.8 s of 1000 awml-base frames, 14 s at 6000, issue 87). So here the first part runs per
sample (`sample_matches`, in the metrics' process pool as each frame comes back): the devkit's boxes, its own
`center_distance`, the same greedy loop restricted to the sample, and each match's errors from the devkit's own
`center_distance`, `velocity_l2`, `scale_iou`, `yaw_diff` and `attr_acc`, as `accumulate` calls them. The second part
(`accumulated`) lays the samples end to end in the order of the devkit's `EvalBoxes`, sorts them once as
`accumulate` does and runs `accumulate`'s own arithmetic on the same numbers in the same order, with the devkit's
`cummean` and `DetectionMetricData`: every field to the bit (`tests/eval/test_devkit_stream.py` holds it against
`accumulate` itself, class by class and threshold by threshold, ties and filtered boxes included). `cpdebug eval`
and hosts without a pool still call `accumulate` itself (`devkit.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cp_debug.eval.boxes import SampleBoxes
from cp_debug.eval.devkit import DIST_THS, class_part, devkit_modules, of_class, range_kept

ERRORS = ("trans_err", "vel_err", "scale_err", "orient_err", "attr_err")  # `accumulate`'s match data, its order


@dataclass(frozen=True)
class SampleMatch:
    """One sample's share of one class's `accumulate`, at every distance threshold: its ground-truth boxes the range
    and point-count filters keep (`npos`), its detections they keep (their `scores`, in the sample's order), which
    of those matched at each threshold (`tp`, (detections, thresholds)) and, per threshold, the matched detections'
    errors (`errors[k]`: (matches, 5) in `ERRORS`' order, rows in the order of `np.flatnonzero(tp[:, k])`)."""

    npos: int
    scores: np.ndarray
    tp: np.ndarray
    errors: tuple[np.ndarray, ...]


def sample_matches(token: str, gt: SampleBoxes, dets: SampleBoxes, class_names: Sequence[str],
                   class_range: float) -> dict[int, SampleMatch]:
    """class -> `SampleMatch` of one sample (`token`), for each class with a box on either side; the boxes made as
    `devkit.evaluate_class` makes them (`devkit_boxes.to_eval_boxes`, then the devkit's range and point filters)."""
    from cp_debug.eval.devkit_boxes import to_eval_boxes

    EvalBoxes, algo, known, DetectionBox, _, _ = devkit_modules()
    names = tuple(class_names)
    present = set(np.asarray(gt.labels).tolist()) | set(np.asarray(dets.labels).tolist())
    out = {}
    for c in sorted(int(v) for v in present):
        sides = of_class({token: gt}, c)[token], of_class({token: dets}, c)[token]
        made = []
        for side, is_gt in zip(sides, (True, False)):
            boxes = to_eval_boxes({token: side}, [token], names, is_gt, DetectionBox, EvalBoxes, known)[token]
            made.append([b for b, keep in zip(boxes, range_kept(side, class_range)) if keep] if boxes else [])
        out[c] = _matched(made[0], made[1], names[c], algo)
    return out


def _matched(gts: list, dets: list, name: str, algo) -> SampleMatch:
    """`accumulate`'s loop over one sample's detections of class `name` (already filtered), at every threshold: the
    devkit's own distances, its order, its greedy choice (`eval/greedy.matched_boxes`, compiled; a NaN distance
    passed over as its loop does)."""
    from cp_debug.eval.greedy import matched_boxes

    scores = [d.detection_score for d in dets]
    tp = np.zeros((len(dets), len(DIST_THS)), dtype=bool)
    errors = [np.zeros((0, len(ERRORS)))] * len(DIST_THS)
    if gts and dets:
        distance = algo.center_distance
        order = [i for (v, i) in sorted((v, i) for (i, v) in enumerate(scores))][::-1]  # as `accumulate` sorts
        dist = np.array([[distance(g, dets[i]) for g in gts] for i in order], dtype=np.float64)
        took = matched_boxes(dist, DIST_THS)  # rows in `order`
        period = np.pi if name == "barrier" else 2 * np.pi
        for k in range(len(DIST_THS)):
            pairs = sorted((order[r], int(j)) for r, j in enumerate(took[:, k]) if j >= 0)
            for i, _ in pairs:
                tp[i, k] = True
            errors[k] = np.array([_errors(gts[j], dets[i], period, algo) for i, j in pairs],
                                 dtype=np.float64).reshape(-1, len(ERRORS))
    return SampleMatch(len(gts), np.array(scores, dtype=np.float64), tp, tuple(errors))


def _errors(g, d, period: float, algo) -> list[float]:
    """A match's data, each as `accumulate` computes it."""
    return [algo.center_distance(g, d), algo.velocity_l2(g, d), 1 - algo.scale_iou(g, d),
            algo.yaw_diff(g, d, period=period), 1 - algo.attr_acc(g, d)]


def accumulated(matches: Sequence[SampleMatch]) -> list:
    """What the devkit's `accumulate` of the class returns at each threshold of `DIST_THS` (a `DetectionMetricData`
    each), from the samples' `SampleMatch`es in the order of its `EvalBoxes`' samples (a sample without a box of the
    class may be left out)."""
    _, algo, _, _, _, _ = devkit_modules()
    data = algo.DetectionMetricData
    npos = sum(m.npos for m in matches)
    if npos == 0:  # no ground truth in range, or no sample at all
        return [data.no_predictions() for _ in DIST_THS]
    scores = np.concatenate([m.scores for m in matches])
    flags = np.concatenate([m.tp for m in matches])
    order = np.lexsort((np.arange(len(scores)), scores))[::-1]  # sorted((score, index))[::-1], as `accumulate`
    conf_sorted = scores[order]
    out = []
    for k in range(len(DIST_THS)):
        rec_interp = np.linspace(0, 1, data.nelem)
        hits = flags[:, k]
        if not hits.any():
            out.append(data.no_predictions())
            continue
        errors = np.full((len(scores), len(ERRORS)), np.nan)
        errors[np.flatnonzero(hits)] = np.concatenate([m.errors[k] for m in matches])  # each sample's, its order
        hit = hits[order].astype(np.int64)
        tp = np.cumsum(hit).astype(float)
        fp = np.cumsum(1 - hit).astype(float)
        prec = tp / (fp + tp)
        rec = tp / float(npos)
        prec = np.interp(rec_interp, rec, prec, right=0)
        matched = hit.astype(bool)
        match_conf = conf_sorted[matched]
        conf = np.interp(rec_interp, rec, conf_sorted, right=0)
        found = errors[order][matched]
        curves = {key: np.interp(conf[::-1], match_conf[::-1], algo.cummean(found[:, j])[::-1])[::-1]
                  for j, key in enumerate(ERRORS)}
        out.append(data(recall=rec_interp, precision=prec, confidence=conf, **curves))
    return out


def class_of_samples(by_sample: Sequence[Mapping[int, SampleMatch]], c: int, name: str):
    """Class `c`'s (`name`) `devkit.ClassPart` from every sample's `sample_matches`, in the order of the devkit's
    samples (sorted tokens): the figures `devkit.evaluate_class` gives."""
    matches = [m[c] for m in by_sample if c in m]
    num_gt = sum(m.npos for m in matches)
    num_det = sum(len(m.scores) for m in matches)
    data = dict(zip(DIST_THS, accumulated(matches))) if num_gt else {}
    return class_part(name, data, num_gt, num_det)


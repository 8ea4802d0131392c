"""`eval/devkit_stream.py`: the devkit's `accumulate` worked out sample by sample, then summed up, against the
devkit's own `accumulate` — every field of its `DetectionMetricData`, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs("nuscenes-devkit")

from cp_debug.eval.boxes import SampleBoxes  # noqa: E402
from cp_debug.eval.devkit import DIST_THS  # noqa: E402

CLASSES = ("car", "truck", "barrier", "bicycle", "pedestrian")


def _set(seed: int, samples: int = 14):
    """Ground truth and detections of `samples` frames: noisy copies of the truth (some far off, some with NaN
    velocity), false positives, scores with ties (rounded to 0.1), truth without lidar points, boxes past 50 m, a
    sample with no box at all and one with detections only."""
    rng = np.random.default_rng(seed)
    gt, det = {}, {}
    for t in range(samples):
        k = int(rng.integers(3, 12))
        truth = np.zeros((k, 9))
        truth[:, :2] = rng.uniform(-60, 60, (k, 2))
        truth[:, 2] = rng.uniform(-2, 0, k)
        truth[:, 3:6] = rng.uniform(0.5, 5, (k, 3))
        truth[:, 6] = rng.uniform(-3.2, 3.2, k)
        truth[:, 7:] = rng.normal(0, 2, (k, 2))
        labels = rng.integers(0, 4, k)  # no pedestrian: a class without ground truth or detections
        extra = int(rng.integers(0, 6))
        found = np.concatenate([truth + np.r_[rng.normal(0, 1.2, 2), 0, rng.normal(0, 0.2, 3),
                                              rng.normal(0, 0.3), rng.normal(0, 0.5, 2)],
                                truth[:extra] + np.r_[rng.normal(0, 0.4, 2), np.zeros(7)]])
        found[rng.uniform(size=len(found)) < 0.1, 7:] = np.nan
        found_labels = np.concatenate([labels, rng.integers(0, 4, extra)])
        scores = np.round(rng.uniform(0, 1, len(found)), 1)
        if t == 3:
            truth, labels = np.zeros((0, 9)), np.zeros(0, np.int64)
        if t == 5:
            found, found_labels, scores = np.zeros((0, 9)), np.zeros(0, np.int64), np.zeros(0)
        gt[f"s{t:02d}"] = SampleBoxes(truth, labels, num_points=rng.integers(0, 4, len(labels)))
        det[f"s{t:02d}"] = SampleBoxes(found, found_labels, scores)
    return gt, det


def _devkit_data(gt, det, name: str, reach: float) -> dict:
    """The devkit's own `accumulate` of class `name` at every threshold, on the boxes `devkit.evaluate_class` makes."""
    from cp_debug.eval.devkit import devkit_modules, of_class, range_kept
    from cp_debug.eval.devkit_boxes import to_eval_boxes

    EvalBoxes, algo, known, DetectionBox, _, _ = devkit_modules()
    tokens = sorted(gt)
    label = CLASSES.index(name)
    sides = of_class(gt, label), of_class(det, label)
    made = [to_eval_boxes(side, tokens, CLASSES, is_gt, DetectionBox, EvalBoxes, known)
            for side, is_gt in zip(sides, (True, False))]
    for boxes, side in zip(made, sides):
        for token in tokens:
            if boxes[token]:
                boxes.boxes[token] = [b for b, keep in zip(boxes[token], range_kept(side[token], reach)) if keep]
    return {th: algo.accumulate(made[0], made[1], name, algo.center_distance, th) for th in DIST_THS}


FIELDS = ("recall", "precision", "confidence", "trans_err", "vel_err", "scale_err", "orient_err", "attr_err")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulated_from_the_samples_is_the_devkits_accumulate_bit_for_bit(seed):
    from cp_debug.eval.devkit import evaluate_class
    from cp_debug.eval.devkit_stream import accumulated, class_of_samples, sample_matches

    gt, det = _set(seed)
    for reach in (1e9, 50.0):
        by_sample = [sample_matches(t, gt[t], det[t], CLASSES, reach) for t in sorted(gt)]
        compared = 0
        for c, name in enumerate(CLASSES):
            theirs = _devkit_data(gt, det, name, reach)
            all_ours = accumulated([m[c] for m in by_sample if c in m])
            for ours, th in zip(all_ours, DIST_THS):
                for field in FIELDS:
                    a, b = getattr(ours, field), getattr(theirs[th], field)
                    assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), (name, th, field)
                compared += int(theirs[th].precision.any())
            part, plain = class_of_samples(by_sample, c, name), evaluate_class(gt, det, CLASSES, name,
                                                                               class_range=reach)
            assert (part.num_gt, part.num_detections) == (plain.num_gt, plain.num_detections)
            assert repr(part.ap_per_threshold) == repr(plain.ap_per_threshold)
            assert repr(part.tp_errors) == repr(plain.tp_errors)
        assert compared >= 8  # classes and thresholds with matches, not only the devkit's "no predictions"


def test_a_match_decided_in_its_sample_follows_the_devkits_order_for_tied_scores():
    """Two detections of one score, each nearest the same ground-truth box: the devkit takes the later one first
    (its sort of (score, index) reversed), so the later one matches and the earlier one is a false positive."""
    from cp_debug.eval.devkit_stream import sample_matches

    truth = SampleBoxes(np.array([[0, 0, -1, 4, 2, 1.5, 0, 0, 0]], np.float64), np.array([0]))
    found = SampleBoxes(np.array([[0.3, 0, -1, 4, 2, 1.5, 0, 0, 0], [0.2, 0, -1, 4, 2, 1.5, 0, 0, 0]], np.float64),
                        np.array([0, 0]), np.array([0.5, 0.5]))
    m = sample_matches("s", truth, found, CLASSES, 1e9)[0]
    assert m.npos == 1 and m.tp[:, 0].tolist() == [False, True]
    assert m.errors[0][0, 0] == pytest.approx(0.2)

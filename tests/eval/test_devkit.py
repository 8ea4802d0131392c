"""The nuscenes-devkit adapter against figures worked out by hand on a tiny two-sample case."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.needs("nuscenes-devkit")

from cp_debug.errors import BadInputError  # noqa: E402
from cp_debug.eval.boxes import SampleBoxes  # noqa: E402
from cp_debug.eval.devkit import default_range, evaluate  # noqa: E402

CLASSES = ("car", "truck", "bus", "bicycle", "pedestrian")
CAR, TRUCK, BUS, BICYCLE, PED = range(5)


def box(x, y, l=4.0, w=2.0, h=1.5, yaw=0.0, vx=0.0, vy=0.0):
    return [x, y, -1.0, l, w, h, yaw, vx, vy]


def sb(rows, labels, scores=None):
    return SampleBoxes(np.array(rows, dtype=np.float64).reshape(-1, 9), np.array(labels), scores)


def hand_case():
    # Cars: one GT per sample. Detections, by score: a false positive 10 m from anything (0.9), then the two
    # cars found 0.3 m off, yaw off by 0.1 rad, velocity off by 0.5 m/s (0.8, 0.7).
    # Pedestrians: found exactly. Bus: a GT never detected. Truck: detections but no GT (not evaluated).
    gt = {
        "a": sb([box(10, 0, vx=1.0), box(0, 5, 0.7, 0.7, 1.7), box(-20, 0, 11, 3, 3.3)], [CAR, PED, BUS]),
        "b": sb([box(30, 10, yaw=1.0)], [CAR]),
    }
    det = {
        "a": sb([box(10.3, 0, yaw=0.1, vx=1.5), box(0, 5, 0.7, 0.7, 1.7), box(10, 10), box(40, 40, 8, 2.5, 3)],
                [CAR, PED, CAR, TRUCK], [0.8, 0.6, 0.9, 0.5]),
        "b": sb([box(30, 10.3, yaw=1.1, vx=0.5)], [CAR], [0.7]),
    }
    return gt, det


def test_hand_made_case_matches_hand_computed_metrics():
    gt, det = hand_case()
    result = evaluate(gt, det, CLASSES)
    per = {c.name: c for c in result.per_class}
    assert set(per) == {"car", "bus", "pedestrian"} and result.not_evaluated == ("truck", "bicycle")

    # Car, every threshold: FP, TP, TP over 2 GT -> precision 0, 1/2, 2/3 at recall 0, 1/2, 1. Interpolated on
    # r = k/100: p = r up to 1/2, then 1/2 + (r - 1/2)/3. AP = mean over k = 11..100 of (p - 0.1) / 0.9:
    # sum_{k=11..50} (k-10)/100 = 8.2, sum_{j=1..50} (0.4 + j/300) = 24.25  ->  (8.2 + 24.25) / 90 / 0.9.
    car_ap = (8.2 + 24.25) / 90 / 0.9
    for th in (0.5, 1.0, 2.0, 4.0):
        assert per["car"].ap_per_threshold[th] == pytest.approx(car_ap, abs=1e-9)
        assert per["pedestrian"].ap_per_threshold[th] == pytest.approx(1.0)
        assert per["bus"].ap_per_threshold[th] == 0.0
    # Both matched cars are off by the same amounts, so every TP error is that constant.
    assert per["car"].tp_errors["trans_err"] == pytest.approx(0.3, abs=1e-6)
    assert per["car"].tp_errors["scale_err"] == pytest.approx(0.0, abs=1e-9)
    assert per["car"].tp_errors["orient_err"] == pytest.approx(0.1, abs=1e-6)
    assert per["car"].tp_errors["vel_err"] == pytest.approx(0.5, abs=1e-6)
    assert math.isnan(per["car"].tp_errors["attr_err"])
    assert per["bus"].tp_errors["trans_err"] == 1.0  # the devkit's value for a class never found

    assert result.mean_ap == pytest.approx((car_ap + 1.0 + 0.0) / 3, abs=1e-9)
    assert result.tp_errors["mATE"] == pytest.approx((0.3 + 0 + 1) / 3, abs=1e-6)
    assert result.tp_errors["mASE"] == pytest.approx((0 + 0 + 1) / 3, abs=1e-6)
    assert result.tp_errors["mAOE"] == pytest.approx((0.1 + 0 + 1) / 3, abs=1e-6)
    assert result.tp_errors["mAVE"] == pytest.approx((0.5 + 0 + 1) / 3, abs=1e-6)
    assert math.isnan(result.tp_errors["mAAE"])
    tp_scores = sum(1 - result.tp_errors[k] for k in ("mATE", "mASE", "mAOE", "mAVE"))
    assert result.nds == pytest.approx((5 * result.mean_ap + tp_scores) / 9, abs=1e-9)
    assert per["car"].num_gt == 2 and per["car"].num_detections == 3


def test_perfect_detections_score_one_and_swapped_sizes_cost_scale():
    gt = {"a": sb([box(5, 5), box(-8, 3, yaw=0.5)], [CAR, CAR]), "b": sb([box(0, -9, 0.7, 0.7, 1.7)], [PED])}
    perfect = {k: SampleBoxes(v.boxes, v.labels, np.full(len(v), 0.9)) for k, v in gt.items()}
    result = evaluate(gt, perfect, CLASSES)
    assert result.mean_ap == pytest.approx(1.0) and result.nds == pytest.approx(1.0)

    # l and w exchanged on the cars: aligned 3D IoU of 4x2x1.5 with 2x4x1.5 is 6 / 18, so ASE = 2/3.
    swapped = perfect["a"].boxes.copy()
    swapped[:, [3, 4]] = swapped[:, [4, 3]]
    result = evaluate(gt, {"a": SampleBoxes(swapped, perfect["a"].labels, perfect["a"].scores), "b": perfect["b"]},
                      CLASSES)
    car = {c.name: c for c in result.per_class}["car"]
    assert car.tp_errors["scale_err"] == pytest.approx(2 / 3, abs=1e-6)
    assert car.ap == pytest.approx(1.0)


def test_range_filter_and_bad_inputs():
    gt = {"a": sb([box(5, 5), box(60, 0)], [CAR, CAR])}
    det = {"a": sb([box(5, 5)], [CAR], [0.9])}
    assert evaluate(gt, det, CLASSES, class_range=50.0).mean_ap == pytest.approx(1.0)
    assert evaluate(gt, det, CLASSES).mean_ap < 1.0
    assert default_range((-51.2, -51.2, -3, 51.2, 51.2, 5)) == pytest.approx(51.2 * math.sqrt(2))
    with pytest.raises(BadInputError, match="no ground truth"):
        evaluate(gt, {"zz": det["a"]}, CLASSES)
    with pytest.raises(BadInputError, match="nuScenes detection names"):
        evaluate(gt, det, ("car", "van"))
    nan = {"a": sb([box(5, 5), box(float("nan"), 0)], [CAR, CAR], [0.9, 0.8])}  # an overflowing head's boxes
    with pytest.raises(BadInputError, match="sample 'a': 1 of 2 box"):
        evaluate(gt, nan, CLASSES)
    many = {"a": sb([box(5, 5)] * 501, [CAR] * 501, [0.5] * 501)}  # the devkit's 500 a sample, over every class
    with pytest.raises(BadInputError, match="sample 'a' has 501 detections; .* at most 500"):
        evaluate(gt, many, CLASSES)
    # the samples are checked together first, then one at a time where something is wrong: the first sample that
    # is wrong is named, with the first check it fails
    gt3 = {t: sb([box(5, 5)], [CAR]) for t in "abc"}
    fine = {t: sb([box(5, 5)], [CAR], [0.9]) for t in "abc"}
    with pytest.raises(BadInputError, match="detections of sample 'b' has a label outside 0..4"):
        evaluate(gt3, {**fine, "b": sb([box(5, 5)], [10], [0.9]), "c": sb([box(5, 5)], [-1], [0.9])}, CLASSES)
    with pytest.raises(BadInputError, match="ground truth of sample 'c' has a label outside"):
        evaluate({**gt3, "c": sb([box(5, 5)], [-1])}, fine, CLASSES)
    with pytest.raises(BadInputError, match="detections of sample 'b' have no scores"):
        evaluate(gt3, {**fine, "b": sb([box(5, 5)], [CAR]), "c": sb([box(5, 5)], [10], [0.9])}, CLASSES)
    with pytest.raises(BadInputError, match="ground truth of sample 'a': 1 of 1 box"):
        evaluate({**gt3, "a": sb([box(float("inf"), 5)], [CAR])}, fine, CLASSES)
    assert evaluate(gt3, {**fine, "b": sb([], [], [])}, CLASSES).mean_ap > 0  # an empty sample is fine


def test_ground_truth_without_points_is_dropped_as_the_devkit_does():
    gt = {"a": SampleBoxes(np.array([box(5, 5), box(-5, 5)]), np.array([CAR, CAR]), num_points=np.array([30, 0]))}
    det = {"a": sb([box(5, 5)], [CAR], [0.9])}
    assert evaluate(gt, det, CLASSES).mean_ap == pytest.approx(1.0)
    gt_unknown = {"a": SampleBoxes(gt["a"].boxes, gt["a"].labels)}  # counts unknown: both boxes count
    assert evaluate(gt_unknown, det, CLASSES).mean_ap < 1.0


def test_logit_scores_cannot_crash_the_devkit_and_keep_the_ranking_metrics():
    from cp_debug.eval.devkit import order_scores

    gt, det = hand_case()
    det["b"] = sb([box(30, 18, yaw=1.1, vx=0.5)], [CAR], [0.7])  # a car missed: recall stops at 1/2
    logits = {t: SampleBoxes(s.boxes, s.labels, np.log(s.scores / (1 - s.scores)) - 3.0) for t, s in det.items()}
    with pytest.raises(AssertionError):  # the devkit's own check: confidences must descend
        evaluate(gt, logits, CLASSES)
    ordered, why = order_scores(logits)
    assert "outside [0, 1]" in why and "rank" in why
    assert all(0 < s.scores.min() and s.scores.max() <= 1 for s in ordered.values())
    got, want = evaluate(gt, ordered, CLASSES), evaluate(gt, det, CLASSES)
    assert got.mean_ap == pytest.approx(want.mean_ap) and got.nds == pytest.approx(want.nds)
    assert order_scores(det) == (det, "")


def test_a_lane_summed_up_from_its_samples_matching_is_evaluate():
    """A sweep on a host with cores to spare matches each sample as it comes (`devkit_stream.sample_matches`) and sums
    each class up after the last (`class_of_samples`): the lane's figures (`combine`) those of `evaluate`, key by
    key, on the hand-made case with more samples, boxes near and far from their truth."""
    from cp_debug.eval.devkit import combine
    from cp_debug.eval.devkit_stream import class_of_samples, sample_matches

    gt, det = hand_case()
    rng = np.random.default_rng(2)
    for t in range(8):
        rows = [box(*rng.uniform(-40, 40, 2), yaw=rng.uniform(-3, 3), vx=rng.normal()) for _ in range(6)]
        labels = rng.integers(0, 5, 6)
        gt[f"s{t}"] = sb(rows, labels)
        noisy = [[r[0] + rng.normal(0, 1.5), r[1] + rng.normal(0, 1.5), *r[2:]] for r in rows]
        det[f"s{t}"] = sb(noisy, labels, rng.uniform(0, 1, 6))
    by_sample = [sample_matches(t, gt[t], det[t], CLASSES, 1e9) for t in sorted(gt)]
    parts = {c: class_of_samples(by_sample, i, c) for i, c in enumerate(CLASSES)}
    assert combine(parts, CLASSES, len(gt), 1e9).to_json() == evaluate(gt, det, CLASSES).to_json()
    assert parts["car"].num_gt > 0 and parts["truck"].ap_per_threshold is not None


def test_the_range_filter_worked_out_a_sample_at_once_is_the_devkits_box_by_box():
    """`devkit.range_kept`: the devkit's `ego_dist < class_range` and point-count filter for a sample's boxes at once,
    the same decision as each `DetectionBox.ego_dist` gives, at the range's very edge too (boxes exactly at it, a bit
    inside and a bit outside)."""
    from nuscenes.eval.detection.data_classes import DetectionBox

    from cp_debug.eval.devkit import range_kept

    rng = np.random.default_rng(3)
    xy = rng.uniform(-80, 80, (400, 2)) * rng.choice([1e-3, 1.0, 1e3], (400, 1))
    reach = float(DetectionBox(translation=(*xy[7], 0.0), ego_translation=(*xy[7], 0.0)).ego_dist)
    edge = xy[7] * np.array([[1.0], [np.nextafter(1.0, 0.0)], [np.nextafter(1.0, 2.0)]])
    xy = np.concatenate([xy, edge])
    rows = np.zeros((len(xy), 9))
    rows[:, :2] = xy
    points = rng.integers(0, 3, len(xy))
    sample = SampleBoxes(rows, np.zeros(len(xy), np.int64), num_points=points)
    for limit in (reach, 50.0, 1e9):
        devkit = [DetectionBox(translation=(x, y, 0.0), ego_translation=(x, y, 0.0), num_pts=int(n)).ego_dist < limit
                  and int(n) != 0 for (x, y), n in zip(xy.tolist(), points.tolist())]
        assert range_kept(sample, limit) == devkit
    unknown_points = SampleBoxes(rows, np.zeros(len(xy), np.int64))  # detections: every box kept inside the range
    assert not range_kept(sample, reach)[7] and range_kept(unknown_points, 1e9) == [True] * len(xy)

"""Detection-level diagnoses on synthetic scenes' boxes: each planted deployment fault gets its diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.eval.boxes import SampleBoxes
from cp_debug.eval.detection_diff import diff_detections
from cp_debug.eval.diagnose import diagnose
from cp_debug.lidar.space import CLASS_NAMES
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.lidar.synthetic import synthetic_scene

CFG = get_preset("demo")


@pytest.fixture(scope="module")
def reference():
    out = {}
    for seed in (11, 12):
        s = synthetic_scene(seed, CFG)
        scores = np.random.default_rng(seed).uniform(0.2, 0.95, len(s.boxes))
        out[f"scene_{seed}"] = SampleBoxes(s.boxes, s.labels, scores)
    return out


def _map(ref, fn):
    return {t: fn(sb) for t, sb in ref.items()}


def _kinds(ref, cand):
    diff = diff_detections(ref, cand, CLASS_NAMES)
    ds = diagnose(ref, cand, diff, score_threshold=CFG.score_threshold, voxel_size=CFG.voxel_size,
                  out_size_factor=CFG.out_size_factor)
    return {d.kind: d for d in ds}, diff


def test_logit_scores_get_the_sigmoid_diagnosis(reference):
    cand = _map(reference, lambda sb: SampleBoxes(sb.boxes, sb.labels, np.log(sb.scores / (1 - sb.scores))))
    kinds, _ = _kinds(reference, cand)
    assert "without sigmoid" in kinds["logits"].message
    assert kinds["logits"].evidence["candidate_scores"]["min"] < 0


def test_near_zero_detections_point_at_the_heatmap(reference):
    first = next(iter(reference))
    cand = {t: SampleBoxes(sb.boxes[:1], sb.labels[:1], sb.scores[:1]) if t == first else SampleBoxes.empty()
            for t, sb in reference.items()}
    kinds, diff = _kinds(reference, cand)
    assert "too_few" in kinds and "sigmoid" in kinds["too_few"].message
    assert diff.total.missing == diff.total.reference - 1


def test_constant_shift_is_a_frame_or_voxel_offset(reference):
    shift = np.array([CFG.voxel_size[0] / 2, -CFG.voxel_size[1] / 2])

    def moved(sb):
        b = sb.boxes.copy()
        b[:, :2] += shift
        return SampleBoxes(b, sb.labels, sb.scores)

    kinds, diff = _kinds(reference, _map(reference, moved))
    ev = kinds["offset"].evidence
    assert ev["median_dx"] == pytest.approx(shift[0], abs=1e-6) and ev["median_dy"] == pytest.approx(shift[1], abs=1e-6)
    assert "half a voxel" in kinds["offset"].message
    assert diff.total.max_centre_shift == pytest.approx(np.hypot(*shift), abs=1e-6)


def test_box_encoding_conventions(reference):
    def swapped_and_turned(sb):
        b = sb.boxes.copy()
        b[:, [3, 4]] = b[:, [4, 3]]
        b[:, 6] += np.pi / 2
        return SampleBoxes(b, sb.labels, sb.scores)

    def turned(sb):
        b = sb.boxes.copy()
        b[:, 6] += np.pi / 2
        return SampleBoxes(b, sb.labels, sb.scores)

    kinds, _ = _kinds(reference, _map(reference, swapped_and_turned))
    assert "size_swap" in kinds and "rot_y_axis_reference" in kinds["size_swap"].message
    kinds, _ = _kinds(reference, _map(reference, turned))
    assert "yaw_offset" in kinds and "pi/2" in kinds["yaw_offset"].message and "size_swap" not in kinds


def test_identical_boxes_are_harmless_and_threshold_losses_are_named(reference):
    kinds, diff = _kinds(reference, dict(reference))
    assert set(kinds) == {"unchanged"} and diff.unchanged and "harmless" in kinds["unchanged"].message

    def near_threshold_lost(sb):
        keep = sb.scores > 0.3
        return SampleBoxes(sb.boxes[keep], sb.labels[keep], sb.scores[keep])

    low = _map(reference, lambda sb: SampleBoxes(sb.boxes, sb.labels, np.where(sb.scores > 0.3, sb.scores, 0.12)))
    kinds, diff = _kinds(low, _map(low, near_threshold_lost))
    assert set(kinds) == {"threshold"}
    assert diff.total.missing == int(sum((sb.scores <= 0.3).sum() for sb in low.values()))


def test_many_extra_boxes_are_named(reference):
    def doubled(sb):
        b = sb.boxes.copy()
        b[:, 0] += 20.0  # far from every reference box: all extra
        return SampleBoxes(np.concatenate([sb.boxes, b]), np.concatenate([sb.labels, sb.labels]),
                           np.concatenate([sb.scores, sb.scores]))

    kinds, diff = _kinds(reference, _map(reference, doubled))
    assert "many_extra" in kinds and diff.total.extra == diff.total.reference

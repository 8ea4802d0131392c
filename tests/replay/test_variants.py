"""The pieces of a replay without a model: rotated BEV IoU and NMS, box conventions, agreement and the verdict's
ranking (ties go to the reference glue; a seeded group wins only by consistency and a margin)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cp_debug.lidar.space import CLASS_NAMES
from cp_debug.lidar.boxes import Detections
from cp_debug.lidar.compare_detections import compare_detections
from cp_debug.replay.engine import Tolerances, agreement
from cp_debug.replay.nms import bev_corners, bev_iou, rotated_nms
from cp_debug.replay.report import GroupScore
from cp_debug.replay.variants import apply_box_variant, box_variants, fitted_thresholds


def _dets(boxes, scores, labels) -> Detections:
    return Detections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(labels), CLASS_NAMES)


def test_rotated_bev_iou_and_nms():
    c = bev_corners(np.array([[0, 0, 0, 4, 2, 1, 0.0], [1, 0, 0, 4, 2, 1, 0.0], [0, 0, 0, 4, 2, 1, math.pi / 2]]))
    assert bev_iou(c[0], c[0]) == pytest.approx(1.0)
    assert bev_iou(c[0], c[1]) == pytest.approx(6 / 10)  # 3 x 2 overlap of two 4 x 2 boxes
    assert bev_iou(c[0], c[2]) == pytest.approx(4 / 12)  # a cross: 2 x 2 overlap
    keep = rotated_nms(np.array([[0, 0, 0, 4, 2, 1, 0.0], [1, 0, 0, 4, 2, 1, 0.0], [10, 0, 0, 1, 1, 1, 0.3]]),
                       np.array([0.5, 0.9, 0.1]), 0.2, 10)
    assert keep.tolist() == [1, 2]


def test_box_conventions_and_fitted_thresholds():
    d = _dets([[1, 2, -1, 4, 2, 1.5, 0.3, 0, 0]], [0.8], [0])
    by_name = {v.name: apply_box_variant(v, d).boxes[0] for v in box_variants()}
    assert by_name["yaw: y-axis reference (-yaw - pi/2)"][6] == pytest.approx(-0.3 - math.pi / 2)
    assert by_name["z: bottom published as the centre"][2] == pytest.approx(-1.75)
    assert by_name["size: length and width swapped"][3:5].tolist() == [2, 4]
    v = fitted_thresholds([_dets([[0] * 9, [0] * 9], [0.5, 0.3], [0, 0])], CLASS_NAMES)
    assert v.params["thresholds"] == {"car": pytest.approx(0.3)}
    assert len(apply_box_variant(v, _dets([[0] * 9, [5] + [0] * 8], [0.35, 0.2], [0, 0]))) == 1


def test_agreement_counts_missing_and_extra_boxes_and_the_tolerances():
    a = _dets([[0, 0, -1, 4, 2, 1.5, 0, 0, 0], [10, 0, -1, 4, 2, 1.5, 0, 0, 0]], [0.9, 0.8], [0, 0])
    b = _dets([[0.05, 0, -1, 4, 2, 1.5, 0.02, 0, 0], [10, 0, -1, 4, 2, 1.5, 1.0, 0, 0],
               [30, 0, -1, 4, 2, 1.5, 0, 0, 0]], [0.9, 0.8, 0.5], [0, 0, 0])
    ag = agreement(a, b, Tolerances(), compare_detections)
    assert (ag.deployed, ag.boxes, ag.matched, ag.agreeing) == (2, 3, 2, 1) and ag.fraction == pytest.approx(1 / 3)


def test_a_seeded_group_is_judged_by_consistency_only_where_it_sits_as_far_from_the_reference():
    g = GroupScore("g", "point order + max_voxels", to_runs=0.27, spread=0.27, runs_to_reference=0.1,
                   deployed_to_reference=0.09)
    assert g.fraction == 1.0
    near_reference = GroupScore("g", "point order", to_runs=0.4, spread=0.45, runs_to_reference=0.4,
                                deployed_to_reference=1.0)
    assert near_reference.fraction == 0.4  # the deployment is the reference: the group explains nothing extra
    assert GroupScore("g", "x", 0.0, 0.0, 0.0, 0.0).fraction == 0.0  # runs that share nothing say nothing

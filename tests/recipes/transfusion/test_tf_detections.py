"""TransFusion-L's detections as Autoware's node makes them (`recipes/transfusion/detections.py`): the decode against
cp_debug's TransFusionBBoxCoder on the same outputs, the node's parameter files, the score / yaw filters and the
two NMS on hand-made boxes, and a planted shift reported by the bisect as a moved box."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from cp_debug.errors import BadInputError
from cp_debug.recipes.transfusion.detections import (NodeParams, bev_iou, decode_proposals, node_detections,
                                                     read_node_params)


@pytest.fixture(scope="module")
def head():
    """The tiny preset's head outputs (random weights) and its config."""
    import torch

    from cp_debug.recipes.transfusion.export import example_voxels
    from cp_debug.recipes.transfusion.source import load_transfusion
    from cp_debug.recipes.transfusion.stages import _BevTrunk

    loaded = load_transfusion("transfusion-tiny", None, 0)
    with torch.no_grad():
        out = loaded.model.pts_bbox_head(_BevTrunk(loaded.model).eval().neck_features(
            *example_voxels(loaded.cfg, max_voxels=300)))
    return out, loaded.cfg


def test_decode_agrees_with_the_bbox_coder(head):
    from cp_debug.models.transfusion.bbox_coder import TransFusionBBoxCoder, proposal_scores
    from cp_debug.recipes.transfusion.export import deploy_outputs

    out, cfg = head
    k = cfg.num_proposals
    deployed = dict(zip(("cls_score0", "bbox_pred0", "dir_cls_pred0"), (t.numpy() for t in deploy_outputs(out, k))))
    params = replace(NodeParams().for_model(cfg), yaw_norm_thresholds=(0.0,) * cfg.num_classes)
    node = decode_proposals(deployed, params)
    last = {n: out[n][..., -k:] for n in ("center", "height", "dim", "rot", "vel")}
    (coder,) = TransFusionBBoxCoder.from_config(cfg).decode(
        proposal_scores(out, k, cfg.num_classes), last["rot"], last["dim"], last["center"], last["height"],
        last["vel"])
    boxes = coder["bboxes"].numpy()
    np.testing.assert_allclose(node.box[:, [0, 1, 3, 4, 5, 6]], boxes[:, [0, 1, 3, 4, 5, 6]], atol=1e-5)
    np.testing.assert_allclose(node.box[:, 2], boxes[:, 2] + boxes[:, 5] / 2, atol=1e-5)  # the node's z: the centre
    # the node takes the best class of cls_score0; AWML keeps each proposal's query class: they agree where it is
    # the same class
    same = node.label == out["query_labels"][0].numpy()
    assert same.any()
    np.testing.assert_array_equal(node.label[same], coder["labels"].numpy()[same])
    np.testing.assert_allclose(node.score[same], coder["scores"].numpy()[same], rtol=1e-6)


def test_the_shipped_files_are_the_defaults(tmp_path):
    (tmp_path / "transfusion.param.yaml").write_text(
        "/**:\n  ros__parameters:\n    trt_precision: fp16\n    circle_nms_dist_threshold: 0.5\n"
        "    iou_nms_search_distance_2d: 10.0\n    iou_nms_threshold: 0.1\n"
        "    yaw_norm_thresholds: [0.3, 0.3, 0.3, 0.3, 0.0]\n    score_threshold: 0.1\n")
    (tmp_path / "transfusion_ml_package.param.yaml").write_text(
        '/**:\n  ros__parameters:\n    class_names: ["CAR", "TRUCK", "BUS", "BICYCLE", "PEDESTRIAN"]\n'
        "    voxels_num: [5000, 30000, 60000]\n    point_cloud_range: [-92.16, -92.16, -3.0, 92.16, 92.16, 7.0]\n"
        "    voxel_size: [0.24, 0.24, 10.0]\n    num_proposals: 200\n")
    files = [tmp_path / "transfusion.param.yaml", tmp_path / "transfusion_ml_package.param.yaml"]
    read = read_node_params(files, base=replace(NodeParams(), score_threshold=0.5, num_proposals=7))
    assert replace(read, sources=()) == NodeParams() and len(read.sources) == 2
    (tmp_path / "mine.param.yaml").write_text("/**:\n  ros__parameters:\n    score_threshold: 0.0\n"
                                              "    circle_nms_dist_threshold: -1.0\n"
                                              "    yaw_norm_thresholds: [0.3, 1.5, -0.2, 0.3, 0.0]\n")
    mine = read_node_params([*files, tmp_path / "mine.param.yaml"])
    assert mine.score_cut == 0.2 and mine.circle_dist == 0.5  # ≤ 0: TransfusionConfig's own
    assert mine.yaw_norms.tolist() == pytest.approx([0.3, 0.0, 0.0, 0.3, 0.0])  # outside [0, 1): 0
    (tmp_path / "bad.param.yaml").write_text("/**:\n  ros__parameters:\n    iou_nms_threshold: high\n")
    with pytest.raises(BadInputError, match="bad.param.yaml:iou_nms_threshold"):
        read_node_params([tmp_path / "bad.param.yaml"])


P = NodeParams(point_cloud_range=(-50, -50, -3, 50, 50, 7), voxel_size=(0.5, 0.5, 10.0), num_proposals=8)


def _outputs(boxes, params=P):
    """Deployed outputs of hand-made boxes: (x, y, length, width, yaw, class, score[, yaw_norm]) each."""
    k = len(boxes)
    cls = np.zeros((1, len(params.class_names), k), np.float32)
    bbox = np.zeros((1, 8, k), np.float32)
    rot = np.zeros((1, 2, k), np.float32)
    for i, (x, y, length, width, yaw, c, score, *norm) in enumerate(boxes):
        cls[0, c, i] = score
        bbox[0, :6, i] = ((x - params.point_cloud_range[0]) / (4 * params.voxel_size[0]),
                          (y - params.point_cloud_range[1]) / (4 * params.voxel_size[1]), 0.5, math.log(length),
                          math.log(width), 0.0)
        r = norm[0] if norm else 1.0
        rot[0, :, i] = r * math.sin(yaw), r * math.cos(yaw)
    return {"cls_score0": cls, "bbox_pred0": bbox, "dir_cls_pred0": rot}


def _kept(boxes, params=P):
    det = node_detections(_outputs(boxes, params), params)
    return [(round(float(b[0]), 3), round(float(b[1]), 3)) for b in det.boxes]


def test_metric_boxes_come_back():
    det = node_detections(_outputs([(10.0, -4.0, 4.5, 2.0, 0.7, 0, 0.9)]), P)
    (box,) = det.boxes
    assert box[:2] == pytest.approx([10.0, -4.0], abs=1e-4) and box[3:5] == pytest.approx([4.5, 2.0], rel=1e-5)
    assert box[6] == pytest.approx(0.7, abs=1e-6) and box[2] == pytest.approx(0.5 - 0.5, abs=1e-6)  # z: bottom
    assert det.labels.tolist() == [0] and det.scores.tolist() == pytest.approx([0.9])


def test_score_and_yaw_filters():
    boxes = [(0, 0, 1, 1, 0, 0, 0.1), (5, 0, 1, 1, 0, 0, 0.1001),  # the threshold is strict
             (10, 0, 1, 1, 0, 0, 0.9, 0.29), (15, 0, 1, 1, 0, 4, 0.9, 0.01)]  # car below 0.3; pedestrian's 0.0
    assert _kept(boxes) == [(15.0, 0.0), (5.0, 0.0)]


def test_circle_nms_is_strict_and_greedy():
    near = [(0, 0, 0.2, 0.2, 0, 0, 0.9), (0.49, 0, 0.2, 0.2, 0, 1, 0.8), (0.98, 0, 0.2, 0.2, 0, 0, 0.7)]
    assert _kept(near) == [(0.0, 0.0), (0.98, 0.0)]  # the 2nd suppressed (any class), so the 3rd stays
    apart = [(0, 0, 0.2, 0.2, 0, 0, 0.9), (0.5, 0, 0.2, 0.2, 0, 0, 0.8)]
    assert _kept(apart) == [(0.0, 0.0), (0.5, 0.0)]  # exactly 0.5 m: not nearer than the threshold


def test_iou_nms_classes_distance_and_chains():
    car, truck, ped = 0, 1, 4
    assert _kept([(0, 0, 4, 2, 0, car, 0.9), (1, 0, 4, 2, 0, truck, 0.8)]) == [(0.0, 0.0)]  # across classes
    assert _kept([(0, 0, 4, 2, 0, car, 0.9), (1, 0, 4, 2, 0, ped, 0.8)]) == [(0.0, 0.0), (1.0, 0.0)]
    chain = [(0, 0, 4, 2, 0, car, 0.9), (2.5, 0, 4, 2, 0, car, 0.8), (5, 0, 4, 2, 0, car, 0.7)]
    assert _kept(chain) == [(0.0, 0.0)]  # the 3rd overlaps only the dropped 2nd, and the node still drops it
    far = replace(P, iou_nms_search_distance_2d=0.9)
    assert _kept([(0, 0, 4, 2, 0, car, 0.9), (1, 0, 4, 2, 0, car, 0.8)], far) == [(0.0, 0.0), (1.0, 0.0)]
    turned = [(0, 0, 4, 1, 0, car, 0.9), (0, 1.2, 4, 1, math.pi / 2, car, 0.8)]  # a cross: IoU 1/7, by the yaw
    assert _kept(turned) == [(0.0, 0.0)]
    assert _kept([(0, 0, 4, 1, 0, car, 0.9), (0, 1.2, 4, 1, 0, car, 0.8)]) == [(0.0, 0.0), (0.0, 1.2)]


def test_bev_iou():
    from cp_debug.recipes.transfusion.detections import footprint

    def fp(x, y, length, width, yaw):
        return footprint(np.array([x, y, 0, length, width, 1, yaw]))

    assert bev_iou(fp(0, 0, 2, 2, 0), fp(0, 0, 2, 2, 0)) == pytest.approx(1.0)
    assert bev_iou(fp(0, 0, 2, 2, 0), fp(1, 0, 2, 2, 0)) == pytest.approx(1 / 3)
    assert bev_iou(fp(0, 0, 2, 2, 0), fp(0, 0, 2, 2, math.pi / 4)) == pytest.approx(
        (8 * (math.sqrt(2) - 1)) / (8 - 8 * (math.sqrt(2) - 1)))
    assert bev_iou(fp(0, 0, 2, 2, 0), fp(5, 0, 2, 2, 0)) == 0.0


def test_a_model_the_params_do_not_describe_is_refused(head):
    from cp_debug.recipes.transfusion.export import deploy_outputs

    out, cfg = head
    deployed = dict(zip(("cls_score0", "bbox_pred0", "dir_cls_pred0"),
                        (t.numpy() for t in deploy_outputs(out, cfg.num_proposals))))
    with pytest.raises(BadInputError, match="classes"):
        node_detections(deployed, replace(P, class_names=("CAR",)))


def test_a_planted_shift_is_a_moved_box():
    """The candidate's best box moved half a head cell (0.8 m on the tiny preset's 1.6 m cells) in x: one box
    moved, none lost or added."""
    from cp_debug.recipes.transfusion.detections import NodeParams, decode_proposals, deployed_outputs

    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.recipes.transfusion.subject import transfusion_subject

    subject = transfusion_subject("transfusion-tiny", max_voxels=300)

    verdict, cfg = subject.detection_verdict, get_preset("transfusion-tiny")
    k, params = cfg.num_proposals, NodeParams().for_model(cfg)

    def shifted(reference, candidate):
        best = int(decode_proposals(deployed_outputs(candidate, k), params).score.argmax())
        center = np.array(candidate["center"], dtype=np.float32)
        center[0, 0, center.shape[-1] - k + best] += 0.5  # the last layer's proposal `best`
        return verdict(reference, {**candidate, "center": center})

    from tests.recipes.transfusion.test_tf_bisect import _run

    report = _run(replace(subject, detection_verdict=shifted))
    boxes = report.candidates[0].detections
    assert boxes["changed"] and boxes["lost"] == boxes["added"] == 0
    assert boxes["matched"] == boxes["reference_boxes"] > 0
    assert boxes["max_centre_shift_m"] == pytest.approx(0.8, abs=1e-4)
    assert "max centre shift 0.8 m" in boxes["summary"]



def test_a_box_an_iou_nms_decision_at_its_threshold_made_is_an_nms_flip_and_explained_only_within_precision():
    """Two cars 4 m × 2 m one behind the other: IoU (4 - dx) / (4 + dx), the node's threshold 0.1 at dx = 3.27 m.
    The reference's second car at 3.26 m (IoU 0.1015) is suppressed; the candidate's at 3.29 m (0.0950) is kept —
    a box added by the NMS decision, explained where the pair moved within the precision's centre limit."""
    from cp_debug.compare.noise import Outcome, judge_boxes
    from cp_debug.recipes.transfusion.verdict import box_flips

    car = 0
    ref = _outputs([(0, 0, 4, 2, 0, car, 0.9), (3.26, 0, 4, 2, 0, car, 0.8)])
    cand = _outputs([(0, 0, 4, 2, 0, car, 0.9), (3.29, 0, 4, 2, 0, car, 0.8)])
    assert len(_kept([(0, 0, 4, 2, 0, car, 0.9), (3.26, 0, 4, 2, 0, car, 0.8)])) == 1
    assert len(_kept([(0, 0, 4, 2, 0, car, 0.9), (3.29, 0, 4, 2, 0, car, 0.8)])) == 2
    (flip,) = box_flips(ref, cand, P)
    assert (flip.kind, flip.threshold, flip.label) == ("IoU", P.iou_nms_threshold, "CAR")
    assert flip.reference == pytest.approx(0.74 / 7.26, rel=1e-3) and flip.candidate == pytest.approx(0.71 / 7.29,
                                                                                                      rel=1e-3)
    assert flip.shift_m == pytest.approx(0.03, abs=1e-4) and flip.score_change == 0.0
    kw = dict(lost_scores=[], added_scores=[0.8], cuts=(0.1,), max_centre_shift=0.0, max_score_change=0.0,
              max_yaw_change=0.0, cell_m=1.2)  # the centre limit: 0.031 of a cell, 0.0375 m
    assert judge_boxes("fp16", **kw).outcome is Outcome.DEGRADED  # without the flip: a box added at score 0.8
    within = judge_boxes("fp16", box_flips=(flip,), **kw)
    assert within.outcome is Outcome.WITHIN_PRECISION and "NMS IoU 0.1019 -> 0.09739" in within.reason
    moved = box_flips(ref, _outputs([(0, 0, 4, 2, 0, car, 0.9), (4.5, 0, 4, 2, 0, car, 0.8)]), P)
    assert moved[0].shift_m == pytest.approx(1.24, abs=1e-3)
    assert judge_boxes("fp16", box_flips=moved, **kw).outcome is Outcome.DEGRADED  # moved beyond the limit
    # a circle-NMS pair: 0.49 m apart in the reference (suppressed), 0.51 m in the candidate
    circle = box_flips(_outputs([(0, 0, 0.2, 0.2, 0, car, 0.9), (0.49, 0, 0.2, 0.2, 0, car, 0.8)]),
                       _outputs([(0, 0, 0.2, 0.2, 0, car, 0.9), (0.51, 0, 0.2, 0.2, 0, car, 0.8)]), P)
    assert [(f.kind, round(f.reference, 3), round(f.candidate, 3)) for f in circle] == [("distance", 0.49, 0.51)]
    assert box_flips(ref, ref, P) == ()


def _remapper_yaml() -> str:
    """A detection_class_remapper.param.yaml: a car over 12.1 m² may become a truck, any vehicle over 36 m² a
    trailer (rows: the label, columns: what it may become, over UNKNOWN, CAR, TRUCK, BUS, TRAILER, MOTORCYCLE,
    BICYCLE, PEDESTRIAN)."""
    allow, lo, hi = ([[0.0] * 8 for _ in range(8)] for _ in range(3))
    for row, col, a, b in ((1, 2, 12.1, 36.0), (1, 4, 36.0, math.inf), (2, 4, 36.0, math.inf), (3, 4, 36.0, math.inf)):
        allow[row][col], lo[row][col], hi[row][col] = 1, a, b

    def flat(m):
        return "[" + ", ".join(".inf" if v == math.inf else repr(v) for r in m for v in r) + "]"

    return (f"/**:\n  ros__parameters:\n    allow_remapping_by_area_matrix: {flat(allow)}\n"
            f"    min_area_matrix: {flat(lo)}\n    max_area_matrix: {flat(hi)}\n")


def test_the_class_remapper_relabels_by_area_and_a_label_changed_at_its_bound_is_a_flip(tmp_path):
    """The node's detection_class_remapper (its file given with --params): a car over 12.1 m² is published as a
    truck, one over 36 m² as a trailer (the first allowed column whose [min, max] holds the area; .inf: no bound).
    A car of 12.08 m² in the reference and 12.12 m² in the candidate is a CAR lost and a TRUCK added — a decision
    at the area bound, explained where the box moved within the precision."""
    from cp_debug.compare.noise import Outcome, judge_boxes
    from cp_debug.recipes.transfusion.detections import AUTOWARE_LABELS
    from cp_debug.recipes.transfusion.verdict import box_flips

    (tmp_path / "detection_class_remapper.param.yaml").write_text(_remapper_yaml())
    params = read_node_params([tmp_path / "detection_class_remapper.param.yaml"])
    assert params.max_area_matrix[12] == math.inf and params.min_area_matrix[10] == 12.1
    car, ped = 0, 4
    det = node_detections(_outputs([(0, 0, 4.5, 2.0, 0, car, 0.9), (20, 0, 6.0, 2.5, 0, car, 0.8),
                                    (40, 0, 13.0, 3.0, 0, car, 0.7), (60, 0, 0.8, 0.8, 0, ped, 0.6)]), params)
    assert det.class_names == AUTOWARE_LABELS
    assert [AUTOWARE_LABELS[i] for i in det.labels] == ["CAR", "TRUCK", "TRAILER", "PEDESTRIAN"]
    assert node_detections(_outputs([(20, 0, 6.0, 2.5, 0, car, 0.8)]), P).class_names == P.class_names  # no file
    ref = _outputs([(0, 0, 5.49, 2.2, 0, car, 0.9)])
    cand = _outputs([(0, 0, 5.51, 2.2, 0, car, 0.9)])
    (flip,) = box_flips(ref, cand, params)
    assert (flip.kind, flip.threshold, flip.boxes, flip.label) == ("area", 12.1, 2, "CAR -> TRUCK")
    assert flip.reference < 12.1 < flip.candidate
    kw = dict(lost_scores=[0.9], added_scores=[0.9], cuts=(0.1,), max_centre_shift=0.0, max_score_change=0.0,
              max_yaw_change=0.0, cell_m=1.2)
    assert judge_boxes("fp16", **kw).outcome is Outcome.DEGRADED
    assert judge_boxes("fp16", box_flips=(flip,), **kw).outcome is Outcome.WITHIN_PRECISION
    with pytest.raises(BadInputError, match="8 x 8"):
        node_detections(ref, replace(params, min_area_matrix=(0.0,) * 25))
    (tmp_path / "short.param.yaml").write_text("/**:\n  ros__parameters:\n    min_area_matrix: [0.0, 1.0]\n")
    with pytest.raises(BadInputError, match=r"short.param.yaml: the class remapping matrices must be 8 x 8"):
        read_node_params([tmp_path / "detection_class_remapper.param.yaml", tmp_path / "short.param.yaml"])

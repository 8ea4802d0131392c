"""A decision's members, the candidate's against the reference's (choice_members.py), on arrays: what moved, what was
replaced, the reference's margin there and the candidate's error."""

from __future__ import annotations

import numpy as np
from onnx import helper

from cp_debug.bisect.findings.choice_members import Members, nms_tie, threshold_tie


def test_topk_members_in_another_order_and_replaced():
    x = np.array([[0.9, 0.5, 0.1, 0.7, 0.2, 0.50002]])
    y = x + np.array([[0, 0, 0, 0, 0, -3e-5]])
    ref = np.array([[0, 3, 5, 1]])  # 0.9, 0.7, 0.50002, 0.5
    order = Members.compare(ref, np.array([[0, 3, 1, 5]]), x, y, "fp16")
    assert (order.reordered, order.replaced, order.flipped_rows) == (2, 0, 1)
    assert abs(order.margin - 2e-5) < 1e-9 and order.step == 2 ** -11 and abs(order.error - 3e-5) < 1e-9
    cut = Members.compare(np.array([[0, 3, 5]]), np.array([[0, 3, 1]]), x, y, "fp16")
    assert (cut.reordered, cut.replaced) == (0, 1) and abs(cut.margin - 2e-5) < 1e-9


def test_a_threshold_flip_reads_the_constant_side_as_the_threshold():
    a = np.array([0.5001, 0.3, 0.7])
    m = Members.threshold_of((a, np.float32(0.5), a > 0.5), (np.array([0.5, 0.3, 0.7]), np.float32(0.5),
                                                             np.array([False, False, True])), "fp16")
    assert (m.kind, m.replaced, m.rows, m.threshold) == ("threshold", 1, 3, 0.5)
    assert abs(m.margin - 1e-4) < 1e-9 and abs(m.error - 1e-4) < 1e-9 and m.step == 2 ** -11
    node = helper.make_node("Greater", ["s", "t"], ["keep"], name="gt")
    near, size, gap, step, limit = threshold_tie(node, {"s": a}, {"t": np.array(0.5, np.float32)}, "fp16")
    assert (near, size, limit, step) == (1, 3, 0.5, 2 ** -11) and abs(gap - 1e-4) < 1e-9
    assert threshold_tie(node, {"s": a + 0.1}, {"t": np.array(0.5, np.float32)}, "fp16") is None


def test_nms_names_the_iou_its_kept_box_lies_at():
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "n", "iou"], ["kept"], name="nms")
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 1, 0.5001], [4, 4, 5, 5]]], np.float64)
    scores = np.array([[[0.9, 0.8, 0.7]]])
    ref = {"boxes": boxes, "scores": scores, "kept": np.array([[0, 0, 0], [0, 0, 2]])}
    cand = {"boxes": np.where(boxes == 0.5001, 0.5, boxes), "scores": scores,
            "kept": np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2]])}
    m = Members.nms_of(ref, cand, node, 0.5, None, "fp16")
    assert (m.kind, m.chosen, m.replaced, m.entered, m.near, m.threshold) == ("nms", 2, 0, 1, "IoU", 0.5)
    assert abs(m.margin - 1e-4) < 1e-9 and abs(m.error - 1e-4) < 1e-9
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "n", "iou", "score"], ["kept"], name="nms")
    found = nms_tie(node, {"boxes": boxes, "scores": scores}, {"iou": np.array([0.5], np.float32),
                                                              "score": np.array([0.8], np.float32)}, "fp16")
    assert found[0] == 1 and found[3:] == (0.5, "IoU") and abs(found[1] - 0.5001) < 1e-6 and found[2] == 0.5, found
    far = np.where(boxes == 0.5001, 0.6, boxes)
    assert nms_tie(node, {"boxes": far, "scores": scores}, {"iou": np.array([0.5], np.float32)}, "fp16") is None

"""Rotated-IoU NMS in the bird's-eye view (mmdet3d's `nms_bev`, as deployments that skip circle NMS use it):
boxes in descending score suppress later boxes whose rotated BEV IoU with them exceeds the threshold."""

from __future__ import annotations

import numpy as np

from cp_debug.data.boxes import bev_corners, bev_overlap

__all__ = ["bev_corners", "bev_iou", "rotated_nms"]  # bev_corners: the box geometry's (data/boxes.py)


def bev_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Rotated IoU of two (4, 2) counter-clockwise BEV rectangles."""
    inter, union = bev_overlap(a, b)
    return inter / union if inter > 0 and union > 0 else 0.0


def rotated_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray:
    """Indices kept, in descending score."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    corners = bev_corners(np.asarray(boxes)) if len(boxes) else np.zeros((0, 4, 2))
    keep: list[int] = []
    for i in order:
        if len(keep) >= max_keep:
            break
        if all(bev_iou(corners[i], corners[k]) <= iou_threshold for k in keep):
            keep.append(int(i))
    return np.asarray(keep, np.int64)

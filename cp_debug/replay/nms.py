"""Rotated-IoU NMS in the bird's-eye view (mmdet3d's `nms_bev`, as deployments that skip circle NMS use it):
boxes in descending score suppress later boxes whose rotated BEV IoU with them exceeds the threshold."""

from __future__ import annotations

import numpy as np


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) counter-clockwise BEV corners of (N, >=7) boxes [x, y, z, l, w, h, yaw, ...]."""
    b = np.asarray(boxes, np.float64).reshape(-1, boxes.shape[-1])
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    lx = local[None, :, 0] * b[:, None, 3]
    ly = local[None, :, 1] * b[:, None, 4]
    return np.stack([b[:, None, 0] + c[:, None] * lx - s[:, None] * ly,
                     b[:, None, 1] + s[:, None] * lx + c[:, None] * ly], -1)


def _area(poly: list) -> float:
    if len(poly) < 3:
        return 0.0
    p = np.asarray(poly)
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))


def _clip(subject: list, a: np.ndarray, b: np.ndarray) -> list:
    """Sutherland-Hodgman: the part of `subject` left of the edge a -> b."""
    def inside(p):
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= 0

    out = []
    for i, cur in enumerate(subject):
        prev = subject[i - 1]
        if inside(cur):
            if not inside(prev):
                out.append(_cross(prev, cur, a, b))
            out.append(cur)
        elif inside(prev):
            out.append(_cross(prev, cur, a, b))
    return out


def _cross(p, q, a, b):
    d1, d2 = np.subtract(q, p), np.subtract(b, a)
    den = d1[0] * d2[1] - d1[1] * d2[0]
    t = ((a[0] - p[0]) * d2[1] - (a[1] - p[1]) * d2[0]) / den if den else 0.0
    return (p[0] + t * d1[0], p[1] + t * d1[1])


def bev_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Rotated IoU of two (4, 2) counter-clockwise BEV rectangles."""
    poly = [tuple(p) for p in a]
    for i in range(4):
        poly = _clip(poly, b[i], b[(i + 1) % 4])
        if not poly:
            return 0.0
    inter = _area(poly)
    union = _area(list(a)) + _area(list(b)) - inter
    return inter / union if union > 0 else 0.0


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

"""Box geometry on (K, 9) boxes [x, y, z_bottom, l, w, h, yaw, vx, vy] (the decoder's convention)."""

from __future__ import annotations

import numpy as np


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """(M, K) bool: point m lies inside box k (grown by `margin` metres on every side)."""
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    if len(b) == 0:
        return np.zeros((len(pts), 0), dtype=bool)
    dx = pts[:, None, 0] - b[None, :, 0]
    dy = pts[:, None, 1] - b[None, :, 1]
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    lx = c * dx + s * dy  # into each box's frame
    ly = -s * dx + c * dy
    dz = pts[:, None, 2] - b[None, :, 2]
    return ((np.abs(lx) <= b[:, 3] / 2 + margin) & (np.abs(ly) <= b[:, 4] / 2 + margin)
            & (dz >= -margin) & (dz <= b[:, 5] + margin))


def count_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(K,) int: points inside each box, counted in chunks so memory stays small for big clouds."""
    b = np.asarray(boxes).reshape(-1, 9)
    out = np.zeros(len(b), dtype=np.int64)
    for i in range(0, len(points), 50000):
        out += points_in_boxes(points[i : i + 50000], b).sum(0)
    return out


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) counter-clockwise BEV corners of (N, >=7) boxes [x, y, z, l, w, h, yaw, ...]: length along the yaw,
    width across."""
    b = np.asarray(boxes, np.float64).reshape(-1, np.shape(boxes)[-1])
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    lx = local[None, :, 0] * b[:, None, 3]
    ly = local[None, :, 1] * b[:, None, 4]
    return np.stack([b[:, None, 0] + c[:, None] * lx - s[:, None] * ly,
                     b[:, None, 1] + s[:, None] * lx + c[:, None] * ly], -1)


def polygon_area(poly: np.ndarray) -> float:
    """The area of a simple polygon (P, 2) (shoelace); 0 below three corners."""
    p = np.asarray(poly, np.float64).reshape(-1, 2)
    if len(p) < 3:
        return 0.0
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))


def _clip(subject: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman: the part of convex `subject` left of the directed edge a→b."""
    if not len(subject):
        return subject
    side = (b[0] - a[0]) * (subject[:, 1] - a[1]) - (b[1] - a[1]) * (subject[:, 0] - a[0])
    out = []
    for k in range(len(subject)):
        p, q, sp, sq = subject[k], subject[(k + 1) % len(subject)], side[k], side[(k + 1) % len(subject)]
        if sp >= 0:
            out.append(p)
        if (sp >= 0) != (sq >= 0):
            out.append(p + (q - p) * (sp / (sp - sq)))
    return np.asarray(out, np.float64).reshape(-1, 2)


def bev_overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(intersection, union) areas of two convex BEV footprints (corners counter-clockwise, e.g. `bev_corners`)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    inter = a
    for k in range(len(b)):
        inter = _clip(inter, b[k], b[(k + 1) % len(b)])
    area = polygon_area(inter)
    return area, polygon_area(a) + polygon_area(b) - area

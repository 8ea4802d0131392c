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

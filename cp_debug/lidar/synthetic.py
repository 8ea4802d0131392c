"""A seeded synthetic LiDAR scan: noisy ground, boxes of the five classes sampled as surface points, clutter.

Not a simulator: it gives the network realistic input statistics (a flat ground with 1/r density, dense
object surfaces, poles and walls) so that export and backend comparisons run on something like a scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from cp_debug.lidar.space import CLASS_NAMES

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.space import LidarConfig

# (length, width, height) means in metres and a typical speed, per class.
CLASS_SIZES = {
    "car": ((4.5, 1.9, 1.6), 8.0),
    "truck": ((8.0, 2.5, 3.0), 6.0),
    "bus": ((11.0, 2.9, 3.3), 6.0),
    "bicycle": ((1.8, 0.6, 1.3), 3.0),
    "pedestrian": ((0.7, 0.7, 1.75), 1.2),
}
GROUND_Z = 0.0


@dataclass(frozen=True)
class Scene:
    """points (M, 5) float32: x, y, z, intensity, time (0); boxes (K, 9) float32 [x, y, z_bottom, l, w, h, yaw,
    vx, vy] in the decoder's convention; labels (K,) int64 into `class_names`."""

    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])


def _box_surface(rng: np.random.Generator, box: np.ndarray, n: int) -> np.ndarray:
    """n points on the top and four sides of a box, weighted by face area."""
    x, y, zb, l, w, h, yaw = box[:7]
    areas = np.array([l * w, l * h, l * h, w * h, w * h])
    face = rng.choice(5, size=n, p=areas / areas.sum())
    u = rng.uniform(-0.5, 0.5, size=n)
    v = rng.uniform(-0.5, 0.5, size=n)
    local = np.empty((n, 3))
    top, side_l, side_w = face == 0, (face == 1) | (face == 2), face >= 3
    local[top] = np.stack([u[top] * l, v[top] * w, np.full(top.sum(), h)], 1)
    sign = np.where(face == 1, 0.5, -0.5)
    local[side_l] = np.stack([u[side_l] * l, sign[side_l] * w, (v[side_l] + 0.5) * h], 1)
    sign = np.where(face == 3, 0.5, -0.5)
    local[side_w] = np.stack([sign[side_w] * l, u[side_w] * w, (v[side_w] + 0.5) * h], 1)
    local += rng.normal(0.0, 0.02, size=local.shape)
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.empty_like(local)
    out[:, 0] = x + c * local[:, 0] - s * local[:, 1]
    out[:, 1] = y + s * local[:, 0] + c * local[:, 1]
    out[:, 2] = zb + local[:, 2]
    return out


def synthetic_scene(
    seed: int = 0,
    cfg: "LidarConfig | Sequence[float] | None" = None,
    *,
    point_cloud_range: Sequence[float] | None = None,
    n_boxes: int = 16,
    n_ground: int = 20000,
    n_clutter: int = 5000,
    max_radius: float = 60.0,
) -> Scene:
    """A deterministic scene for `seed` inside `cfg.point_cloud_range` (`cfg` may also be a 6-value range)."""
    if cfg is not None and not hasattr(cfg, "point_cloud_range"):
        cfg, point_cloud_range = None, cfg
    if point_cloud_range is None:
        point_cloud_range = cfg.point_cloud_range if cfg is not None else (-51.2, -51.2, -3.0, 51.2, 51.2, 5.0)
    x0, y0, _, x1, y1, _ = (float(v) for v in point_cloud_range)
    rng = np.random.default_rng(seed)
    half = min(abs(x0), abs(x1), abs(y0), abs(y1))
    radius = min(half * 0.95, max_radius)

    # Ground: uniform in radius, so density falls as 1/r like a spinning LiDAR's rings.
    r = rng.uniform(2.5, radius, n_ground)
    t = rng.uniform(-np.pi, np.pi, n_ground)
    ground = np.stack([r * np.cos(t), r * np.sin(t), GROUND_Z + rng.normal(0, 0.04, n_ground)], 1)
    parts = [np.concatenate([ground, rng.uniform(0, 30, (n_ground, 1))], 1)]

    # Objects: non-overlapping boxes, points on their surfaces, fewer with distance.
    boxes, labels = [], []
    box_radius = max(radius * 0.85, 5.0)
    tries = 0
    while len(boxes) < n_boxes and tries < 50 * n_boxes:
        tries += 1
        label = int(rng.integers(0, len(CLASS_NAMES)))
        (l, w, h), speed = CLASS_SIZES[CLASS_NAMES[label]]
        l, w, h = (v * rng.uniform(0.9, 1.1) for v in (l, w, h))
        rr = rng.uniform(4.0, box_radius)
        tt = rng.uniform(-np.pi, np.pi)
        x, y = rr * np.cos(tt), rr * np.sin(tt)
        if any(np.hypot(x - b[0], y - b[1]) < 0.5 * (np.hypot(l, w) + np.hypot(b[3], b[4])) + 0.5 for b in boxes):
            continue
        yaw = rng.uniform(-np.pi, np.pi)
        v = rng.uniform(0, speed)
        boxes.append([x, y, GROUND_Z, l, w, h, yaw, v * np.cos(yaw), v * np.sin(yaw)])
        labels.append(label)
    for box in boxes:
        dist = max(np.hypot(box[0], box[1]), 1.0)
        n = int(np.clip(4000.0 * box[3] * box[5] / (dist * 8.0), 40, 1500))
        pts = _box_surface(rng, np.asarray(box), n)
        parts.append(np.concatenate([pts, rng.uniform(20, 120, (n, 1))], 1))

    # Clutter: poles, two wall segments and scattered returns above the ground.
    n_poles = 12
    per_pole = max(n_clutter // (3 * n_poles), 1)
    for _ in range(n_poles):
        pr, pt = rng.uniform(5, radius), rng.uniform(-np.pi, np.pi)
        z = rng.uniform(0, 4.0, per_pole)
        xy = np.array([pr * np.cos(pt), pr * np.sin(pt)]) + rng.normal(0, 0.05, (per_pole, 2))
        parts.append(np.concatenate([xy, z[:, None], rng.uniform(10, 80, (per_pole, 1))], 1))
    n_wall = n_clutter // 3
    for sign in (-1.0, 1.0):
        wx = rng.uniform(-radius * 0.9, radius * 0.9, n_wall // 2)
        wy = np.full_like(wx, sign * radius * 0.9) + rng.normal(0, 0.05, wx.shape)
        wz = rng.uniform(0, 3.0, wx.shape)
        parts.append(np.stack([wx, wy, wz, rng.uniform(5, 60, wx.shape)], 1))
    n_scatter = n_clutter - n_poles * per_pole - 2 * (n_wall // 2)
    if n_scatter > 0:
        sr, st = rng.uniform(3, radius, n_scatter), rng.uniform(-np.pi, np.pi, n_scatter)
        parts.append(np.stack([sr * np.cos(st), sr * np.sin(st), rng.uniform(0.2, 2.5, n_scatter),
                               rng.uniform(0, 50, n_scatter)], 1))

    pts = np.concatenate(parts, 0)
    pts = pts[rng.permutation(pts.shape[0])]  # a LiDAR's order is not grouped by object
    points = np.concatenate([pts, np.zeros((pts.shape[0], 1))], 1).astype(np.float32)
    return Scene(
        points=points,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 9),
        labels=np.asarray(labels, dtype=np.int64),
    )

"""CenterPoint training targets as mmdet3d's `CenterHead.get_targets_single` builds them (one task, all classes).

Per GT box: a Gaussian on its class's heatmap at the integer centre cell, radius `gaussian_radius((l', w'),
min_overlap)` in head cells floored to an int and at least `min_radius`; at the same cell's index a
regression target [dx, dy (sub-cell offset), z (gravity centre), log l, log w, log h, sin yaw, cos yaw, vx,
vy] in the order of the heads reg, height, dim, rot, vel. The decoder (`decode.py`) inverts exactly this:
yaw = atan2(rot[0], rot[1]), dims = exp(dim), z_bottom = height - h / 2. AWML's `rot_y_axis_reference` is an
export-time permutation of the trained outputs (`BackboneNeckHeadStage`), so training never sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

CODE_SIZE = 10


@dataclass(frozen=True)
class TargetConfig:
    """mmdet3d's train_cfg for CenterHead, as AWML sets it."""

    max_objs: int = 500
    min_radius: int = 2
    gaussian_overlap: float = 0.1
    code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)


@dataclass(frozen=True)
class Targets:
    """heatmap (C, H, W) float32; anno_box (max_objs, 10) float32; ind (max_objs,) int64 = y * W + x;
    mask (max_objs,) uint8."""

    heatmap: np.ndarray
    anno_box: np.ndarray
    ind: np.ndarray
    mask: np.ndarray


def gaussian_radius(det_size: tuple[float, float], min_overlap: float = 0.5) -> float:
    """CornerNet's radius (mmdet3d `gaussian_radius`): the smallest of the three quadratic roots."""
    height, width = det_size
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def gaussian_2d(radius: int) -> np.ndarray:
    """mmdet3d `gaussian_2d((2r+1, 2r+1), sigma=(2r+1)/6)`, tiny values zeroed."""
    sigma = (2 * radius + 1) / 6
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h


def draw_heatmap_gaussian(heatmap: np.ndarray, center: tuple[int, int], radius: int) -> None:
    """Max the Gaussian of `radius` into heatmap (H, W) at center (x, y), clipped at the borders (in place)."""
    g = gaussian_2d(radius)
    x, y = center
    height, width = heatmap.shape
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    region = heatmap[y - top : y + bottom, x - left : x + right]
    patch = g[radius - top : radius + bottom, radius - left : radius + right]
    if min(patch.shape) > 0 and min(region.shape) > 0:
        np.maximum(region, patch, out=region)


def build_targets(boxes: np.ndarray, labels: np.ndarray, cfg: Any,
                  tcfg: TargetConfig = TargetConfig()) -> Targets:
    """Targets for one sample's GT boxes (K, 9) [x, y, z_bottom, l, w, h, yaw, vx, vy] and labels (K,); `cfg`: a
    LiDAR detector's config with a head grid (`head_size`, `out_size_factor`, `num_classes`: CenterPoint's, whose
    heatmap TransFusion-L's dense heatmap shares)."""
    fx, fy = cfg.head_size
    vx, vy = cfg.voxel_size[0], cfg.voxel_size[1]
    x0, y0 = cfg.point_cloud_range[0], cfg.point_cloud_range[1]
    osf = cfg.out_size_factor
    heatmap = np.zeros((cfg.num_classes, fy, fx), dtype=np.float32)
    anno = np.zeros((tcfg.max_objs, CODE_SIZE), dtype=np.float32)
    ind = np.zeros((tcfg.max_objs,), dtype=np.int64)
    mask = np.zeros((tcfg.max_objs,), dtype=np.uint8)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    for k in range(min(len(boxes), tcfg.max_objs)):
        x, y, zb, l, w, h, yaw, v_x, v_y = boxes[k]
        width, length = l / vx / osf, w / vy / osf  # mmdet3d: dx over voxel x, dy over voxel y
        if width <= 0 or length <= 0:
            continue
        radius = max(tcfg.min_radius, int(gaussian_radius((length, width), tcfg.gaussian_overlap)))
        cx, cy = (x - x0) / vx / osf, (y - y0) / vy / osf
        ix, iy = int(cx), int(cy)  # torch .int() truncates toward zero, as mmdet3d
        if not (0 <= ix < fx and 0 <= iy < fy):
            continue
        draw_heatmap_gaussian(heatmap[int(labels[k])], (ix, iy), radius)
        ind[k] = iy * fx + ix
        mask[k] = 1
        anno[k] = [cx - ix, cy - iy, zb + h / 2, math.log(l), math.log(w), math.log(h),
                   math.sin(yaw), math.cos(yaw), v_x, v_y]
    return Targets(heatmap, anno, ind, mask)

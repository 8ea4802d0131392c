"""How many pillars a frame fills: what the node's voxel cap (`max_voxel_size`) must hold, or it drops the rest
without a word (Autoware warns only in its diagnostics; CUDA-CenterPoint not at all)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cp_debug.lint.findings import Fact


def pillars(points: np.ndarray, point_cloud_range: Sequence[float], voxel_size: Sequence[float]) -> int:
    """Non-empty pillars of one scan: points with min <= p < max on every axis, binned by voxel size (float32)."""
    pts = np.asarray(points, dtype=np.float32)[:, :3]
    lo = np.asarray(point_cloud_range[:3], dtype=np.float32)
    hi = np.asarray(point_cloud_range[3:], dtype=np.float32)
    vs = np.asarray(voxel_size, dtype=np.float32)
    inside = np.all((pts >= lo) & (pts < hi), axis=1)
    cells = np.floor((pts[inside] - lo) / vs).astype(np.int64)
    if not len(cells):
        return 0
    return int(len(np.unique(cells, axis=0)))


def fullest_frame(frames, cfg, point_cloud_range, voxel_size, where: str) -> Fact:
    """The most pillars any of `frames` fills (each loaded as `cfg` loads it: columns, sweeps), as a fact naming
    the frame."""
    most, token = -1, ""
    for frame in frames:
        n = pillars(frame.load(cfg).points, point_cloud_range, voxel_size)
        if n > most:
            most, token = n, frame.token
    return Fact(max(most, 0), f"{where}: frame {token} of {len(frames)}", "data")

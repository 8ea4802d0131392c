"""The space a LiDAR detector sees, as every LiDAR recipe states it: the classes of the T4 datasets AWML trains on,
the voxel grid of a point-cloud range, and `LidarConfig`, what the shared point, voxel and scene code reads of a
recipe's model config (CenterPoint's and TransFusion-L's configs both have it)."""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import numpy as np

CLASS_NAMES = ("car", "truck", "bus", "bicycle", "pedestrian")


class LidarConfig(Protocol):
    """What cp_debug/lidar and the data readers take of a LiDAR model's config."""

    name: str
    point_cloud_range: Sequence[float]  # x_min, y_min, z_min, x_max, y_max, z_max (m)
    voxel_size: Sequence[float]
    max_num_points: int  # points kept per voxel
    max_voxels: int
    load_dim: int  # the columns a point file holds
    use_dim: Sequence[int]  # the point file's columns the model takes
    in_channels: int
    sweeps_num: int  # the sweeps merged into one frame (1: the key frame only)
    sweeps_remove_close: bool  # a sweep's points within 1 m of the sensor are dropped (AWML's remove_close)
    class_names: tuple[str, ...]


def voxel_grid(point_cloud_range, voxel_size) -> tuple[int, int, int]:
    """(nx, ny, nz) as mmcv computes it: round((max - min) / voxel_size) in float32."""
    pcr = np.asarray(point_cloud_range, dtype=np.float32)
    vs = np.asarray(voxel_size, dtype=np.float32)
    g = (pcr[3:] - pcr[:3]) / vs
    return tuple(int(math.floor(float(v) + 0.5)) for v in g)  # C round(): half away from zero

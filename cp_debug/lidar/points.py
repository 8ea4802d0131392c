"""An array of points -> the model's input columns, and the model's range filter.

The model reads the columns `cfg.use_dim` names of a point's file features x, y, z, intensity, time (AWML's
LoadPointsFromMultiSweeps writes the time lag into column 4, 0 for the key frame). `PointsRangeFilter` keeps
the points strictly inside the preset's point_cloud_range (mmdet3d's `in_range_3d`). Reading point files
(.bin/.npy/.npz/.pcd, sweeps) is `cp_debug.data.point_files`'s job; this module is what the model itself needs
(the random init calibrates on an array, every pipeline prepares one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.space import LidarConfig

FILE_COLUMNS = 5
FILE_FEATURES = ("x", "y", "z", "intensity", "time")


def prepare_points(
    array: np.ndarray,
    cfg: "LidarConfig",
    *,
    time_lag: float | None = 0.0,
    source: str = "points",
    file_layout: bool = False,
) -> np.ndarray:
    """Check an (M, 5) or (M, in_channels) array and return the model's (M, in_channels) float32 columns.

    An array with exactly `cfg.in_channels` columns is taken as the model's columns, as is. A 5-column array in
    the file layout (x, y, z, intensity, ring/time) gets column 4 set to `time_lag` (None keeps it) and is cut to
    `cfg.use_dim`. For a 5-channel preset both readings fit a 5-column array: `file_layout=True` picks the
    file layout. NaN/Inf values are refused (files drop them instead: `data.point_files.load_point_file`).
    """
    arr = checked_points(np.asarray(array), source).astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = int(bad.any(axis=1).sum())
        raise BadInputError(
            f"{source} has {rows} point(s) with NaN or Inf values; remove them before inference "
            "(e.g. points[np.isfinite(points).all(1)])"
        )
    ncol = arr.shape[1]
    if ncol == cfg.in_channels and not (file_layout and ncol == FILE_COLUMNS):
        return np.ascontiguousarray(arr)
    if ncol == FILE_COLUMNS:
        return model_columns(arr, cfg, time_lag)
    raise BadInputError(
        f"{source} has {ncol} column(s); preset {cfg.name!r} needs {FILE_COLUMNS} (x, y, z, intensity, time) "
        f"or exactly its {cfg.in_channels} input columns"
    )


def crop_to_range(points: np.ndarray, cfg: "LidarConfig") -> np.ndarray:
    """The points strictly inside the preset's point_cloud_range on x, y and z (mmdet3d's in_range_3d)."""
    lo, hi = np.asarray(cfg.point_cloud_range[:3], np.float32), np.asarray(cfg.point_cloud_range[3:], np.float32)
    xyz = points[:, :3]
    return points[((xyz > lo) & (xyz < hi)).all(axis=1)]


def checked_points(arr: np.ndarray, source: str) -> np.ndarray:
    """`arr` if it is a non-empty 2-D numeric array of at least x, y, z; else one BadInputError naming `source`."""
    if arr.ndim != 2:
        raise BadInputError(f"{source} must be a 2-D array (points x columns), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise BadInputError(f"{source} holds no points")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise BadInputError(f"{source} has dtype {arr.dtype}; point coordinates must be numbers (float32)")
    if arr.shape[1] < 3:
        raise BadInputError(f"{source} has {arr.shape[1]} column(s); a point needs at least x, y, z")
    return arr


def model_columns(feats: np.ndarray, cfg: "LidarConfig", time_lag: float | None) -> np.ndarray:
    """(M, 5) file features -> the model's columns: column 4 set to `time_lag` (None keeps it), cut to use_dim."""
    out = feats.copy()
    if time_lag is not None:
        out[:, 4] = time_lag
    return np.ascontiguousarray(out[:, list(cfg.use_dim)])

"""Load a LiDAR point file into the model's input columns, with one clear error for anything unusable.

Point files have 5 float32 columns: x, y, z, intensity, ring/time. AWML's LoadPointsFromMultiSweeps overwrites
column 4 with the sweep's time lag (0 for the key frame) before the model picks its columns (`use_dim`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.models.centerpoint.config import CenterPointConfig

FILE_COLUMNS = 5
SUFFIXES = (".bin", ".npy", ".npz")


def _read_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".bin":
        size = path.stat().st_size
        if size == 0:
            raise BadInputError(f"point file {path} is empty: it holds no points")
        if size % (4 * FILE_COLUMNS):
            raise BadInputError(
                f"point file {path} has {size} bytes, not a whole number of float32 x {FILE_COLUMNS}-column rows "
                f"({4 * FILE_COLUMNS} bytes each): it is truncated or not a KITTI/T4-style .bin (save .npy for other layouts)"
            )
        return np.fromfile(path, dtype=np.float32).reshape(-1, FILE_COLUMNS)
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise BadInputError(f"point file {path} is not a readable .npy array ({err}); re-save it with numpy.save") from None
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                if "points" not in data.files:
                    raise BadInputError(
                        f"point file {path} has no array named 'points' (it has: {', '.join(data.files) or 'none'}); "
                        "save it with numpy.savez(path, points=array)"
                    )
                return data["points"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise BadInputError(f"point file {path} is not a readable .npz archive ({err}); re-save it with numpy.savez") from None
    raise BadInputError(f"point file {path} has an unknown suffix {suffix!r}: use one of {', '.join(SUFFIXES)}")


def prepare_points(
    array: np.ndarray,
    cfg: "CenterPointConfig",
    *,
    time_lag: float | None = 0.0,
    source: str = "points",
    file_layout: bool = False,
) -> np.ndarray:
    """Check an (M, 5) or (M, in_channels) array and return the model's (M, in_channels) float32 columns.

    An array with exactly `cfg.in_channels` columns is taken as the model's columns, as is. A 5-column array in
    the file layout (x, y, z, intensity, ring/time) gets column 4 set to `time_lag` (None keeps it) and is cut to
    `cfg.use_dim`. For a 5-channel preset both readings fit a 5-column array: `file_layout=True` (what
    `load_points` passes) picks the file layout.
    """
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise BadInputError(f"{source} must be a 2-D array (points x columns), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise BadInputError(f"{source} holds no points")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise BadInputError(f"{source} has dtype {arr.dtype}; point coordinates must be numbers (float32)")
    arr = arr.astype(np.float32, copy=True)
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
        if time_lag is not None:
            arr[:, 4] = time_lag
        return np.ascontiguousarray(arr[:, list(cfg.use_dim)])
    raise BadInputError(
        f"{source} has {ncol} column(s); preset {cfg.name!r} needs {FILE_COLUMNS} (x, y, z, intensity, time) "
        f"or exactly its {cfg.in_channels} input columns"
    )


def load_points(path: str | Path, cfg: "CenterPointConfig", *, time_lag: float | None = 0.0) -> np.ndarray:
    """Read a .bin (float32, 5 columns), .npy or .npz (array `points`) file -> (M, in_channels) float32."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"point file {p} does not exist (give a .bin, .npy or .npz file)")
    return prepare_points(_read_array(p), cfg, time_lag=time_lag, source=f"point file {p}", file_layout=True)

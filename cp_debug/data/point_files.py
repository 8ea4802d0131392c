"""Read a LiDAR point file (or sweeps of one) into the model's input columns as mmdet3d does, with one clear error
for anything unusable.

mmdet3d's `LoadPointsFromFile(load_dim, use_dim)` reads float32 rows of `load_dim` columns and keeps the
columns `use_dim` names (an int n = the first n). The kept columns are read as x, y, z, intensity, time
(nuScenes/T4 `.pcd.bin` store 5; KITTI velodyne files 4). AWML's LoadPointsFromMultiSweeps then overwrites
column 4 with the sweep's time lag (0 for the key frame) before the model picks its columns (`cfg.use_dim`);
a feature the file lacks is zero-filled, and said so. `PointsRangeFilter` drops points outside the preset's
point_cloud_range (strictly inside on every axis, as mmdet3d's `in_range_3d`: `lidar.points`).
Points with NaN/Inf values in a file (organised PCD clouds mark missing returns so) are dropped and counted;
arrays given through the API (`prepare_points`) are refused instead.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.lidar.points import (
    FILE_COLUMNS, FILE_FEATURES, checked_points, crop_to_range, model_columns, prepare_points
)

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.space import LidarConfig

SUFFIXES = (".bin", ".npy", ".npz", ".pcd")
PCD_TIME_FIELDS = ("time", "t", "timestamp", "time_stamp")
_FIT_COLUMNS = range(3, 9)  # column counts a .bin is checked against


@dataclass(frozen=True)
class LoadedPoints:
    """The model's input points of one scan and what loading did to the file's points."""

    points: np.ndarray  # (M, in_channels) float32: finite, inside point_cloud_range
    source: str
    file_format: str  # bin, npy, npz, pcd-ascii, pcd-binary, synthetic, array
    load_dim: int | None  # columns stored per point (None: PCD fields by name, synthetic)
    use_dim: tuple[int, ...] | None  # file columns kept (None: the array is already the model's columns)
    columns: tuple[str, ...]  # the file's columns read as model features, e.g. x, y, z, intensity
    zero_filled: tuple[str, ...]  # model features the file lacks, set to 0
    points_read: int
    non_finite_dropped: int
    out_of_range_dropped: int
    warnings: tuple[str, ...] = ()
    sweeps: int = 0  # past scans added to the key frame (LoadPointsFromMultiSweeps)

    @property
    def points_in_range(self) -> int:
        return int(len(self.points))

    def info(self) -> dict:
        """The report's record of the scan (JSON types only)."""
        return {"source": self.source, "format": self.file_format, "load_dim": self.load_dim,
                "use_dim": list(self.use_dim) if self.use_dim is not None else None,
                "columns": list(self.columns), "zero_filled": list(self.zero_filled),
                "points_read": self.points_read, "non_finite_dropped": self.non_finite_dropped,
                "out_of_range_dropped": self.out_of_range_dropped, "points_in_range": self.points_in_range,
                **({"sweeps": self.sweeps} if self.sweeps else {})}


def parse_use_dim(text: str | None) -> int | tuple[int, ...] | None:
    """`--use-dim`: "4" (the first 4 columns) or "0,1,2,3" (these columns, in this order)."""
    if text is None or not text.strip():
        return None
    parts = [t.strip() for t in text.split(",")]
    try:
        values = [int(t) for t in parts]
    except ValueError:
        raise BadInputError(f"--use-dim {text!r}: give a column count (e.g. 4) or column "
                            "indices (e.g. 0,1,2,3)") from None
    if any(v < 0 for v in values):
        raise BadInputError(f"--use-dim {text!r}: columns are counted from 0 and counts are positive")
    return values[0] if len(values) == 1 and "," not in text else tuple(values)


def load_points(path: str | Path, cfg: "LidarConfig", *, time_lag: float | None = 0.0,
                load_dim: int | None = None, use_dim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """The model's (M, in_channels) float32 points of a .bin, .npy, .npz or .pcd file (see `load_point_file`)."""
    return load_point_file(path, cfg, time_lag=time_lag, load_dim=load_dim, use_dim=use_dim).points


def load_point_file(path: str | Path, cfg: "LidarConfig", *, time_lag: float | None = 0.0,
                    load_dim: int | None = None, use_dim: int | tuple[int, ...] | None = None) -> LoadedPoints:
    """Read a point file as mmdet3d's LoadPointsFromFile(load_dim, use_dim) + PointsRangeFilter would.

    .bin: float32 rows of `load_dim` columns (default `cfg.load_dim`). .npy/.npz (array `points`): the array's
    columns; an array of exactly `cfg.in_channels` (!= 5) columns is the model's columns as is unless
    `load_dim`/`use_dim` is given. .pcd: fields x, y, z, intensity and time (`time`/`t`/`timestamp`) by name.
    """
    return _loaded(_read_features(Path(path), cfg, load_dim, use_dim), cfg, time_lag)


def load_point_array(array: np.ndarray, cfg: "LidarConfig", source: str, *, time_lag: float | None = 0.0,
                     load_dim: int | None = None, use_dim: int | tuple[int, ...] | None = None) -> LoadedPoints:
    """An in-memory scan read exactly as `load_point_file` reads it saved as .npy (format "array"): a scan handed
    over without a temporary file (a sweep's frame to bisect) gets the same points and the same facts."""
    if load_dim is not None and load_dim < 3:
        raise BadInputError(f"--load-dim {load_dim}: a point has at least 3 columns (x, y, z)")
    return _loaded(_numpy_features(np.asarray(array), source, "array", cfg, load_dim, use_dim), cfg, time_lag)


def _loaded(read: "_Read", cfg: "LidarConfig", time_lag: float | None) -> LoadedPoints:
    if read.model is not None:
        return _cropped(read.model, cfg, read.source, read.fmt, read.load_dim, None,
                        tuple(FILE_FEATURES[i] for i in cfg.use_dim), (), ())
    return _finish(read.feats, read.columns, cfg, time_lag, read.source, read.fmt, read.load_dim, read.use_dim,
                   read.pcd_fields)


@dataclass(frozen=True)
class _Read:
    """A point file's points as (M, 5) file features (or, `model`, already the model's columns)."""

    source: str
    fmt: str
    feats: np.ndarray | None
    columns: tuple[str, ...]
    load_dim: int | None
    use_dim: tuple[int, ...] | None
    pcd_fields: tuple[str, ...] = ()
    model: np.ndarray | None = None


def _read_features(p: Path, cfg: "LidarConfig", load_dim: int | None,
                   use_dim: int | tuple[int, ...] | None) -> _Read:
    if not p.is_file():
        raise BadInputError(f"point file {p} does not exist (give a {', '.join(SUFFIXES)} file)")
    if load_dim is not None and load_dim < 3:
        raise BadInputError(f"--load-dim {load_dim}: a point has at least 3 columns (x, y, z)")
    suffix = p.suffix.lower()
    source = f"point file {p}"
    if suffix == ".pcd":
        if load_dim is not None or use_dim is not None:
            raise BadInputError(f"{source} is a PCD file, whose fields are picked by name: drop --load-dim/--use-dim")
        from cp_debug.data.pcd import read_pcd

        cloud = read_pcd(p)
        feats, columns, notes = _pcd_features(cloud, source)
        return _Read(source, f"pcd-{cloud.data}", feats, columns, None, None, notes)
    if suffix == ".bin":
        return _file_features(_read_bin(p, load_dim, cfg), source, "bin", use_dim)
    if suffix in (".npy", ".npz"):
        return _numpy_features(_read_numpy(p, suffix), source, suffix[1:], cfg, load_dim, use_dim)
    raise BadInputError(f"point file {p} has an unknown suffix {suffix!r}: use one of {', '.join(SUFFIXES)}")


def _numpy_features(arr: np.ndarray, source: str, fmt: str, cfg: "LidarConfig", load_dim: int | None,
                    use_dim: int | tuple[int, ...] | None) -> _Read:
    """A numpy array's points: its columns (checked against `load_dim`), or the model's columns as they are."""
    if arr.ndim != 2:
        raise BadInputError(f"{source} must hold a 2-D array (points x columns), got shape {arr.shape}")
    if load_dim is not None and arr.shape[1] != load_dim:
        raise BadInputError(f"{source} holds {arr.shape[1]} columns, not --load-dim {load_dim}: "
                            f"drop --load-dim or give --load-dim {arr.shape[1]}")
    if load_dim is None and use_dim is None and arr.shape[1] == cfg.in_channels != FILE_COLUMNS:
        model = checked_points(arr, source).astype(np.float32)  # already the model's columns
        return _Read(source, fmt, None, (), arr.shape[1], None, model=model)
    return _file_features(arr, source, fmt, use_dim)


def _file_features(arr: np.ndarray, source: str, fmt: str, use_dim: int | tuple[int, ...] | None) -> _Read:
    """The `use_dim` columns of a file's rows as (M, 5) file features (absent ones zero)."""
    arr = checked_points(arr, source)
    cols = _use_columns(use_dim, arr.shape[1], source)
    kept = arr[:, list(cols)].astype(np.float32)
    feats = np.zeros((len(kept), FILE_COLUMNS), np.float32)
    feats[:, : len(cols)] = kept
    return _Read(source, fmt, feats, FILE_FEATURES[: len(cols)], arr.shape[1], cols)


@dataclass(frozen=True)
class Sweep:
    """A past scan added to a key frame as mmdet3d's LoadPointsFromMultiSweeps adds it: its xyz become
    `xyz @ rotation`, then `+ translation` (rounded to float32 after each step, as mmdet3d's in-place arithmetic
    does), its time column `time_lag` (key timestamp - sweep timestamp, seconds). `rotation`/`translation` are
    None where the info file gave no transform (refused when the sweep is used)."""

    path: Path
    time_lag: float | None
    rotation: np.ndarray | None  # (3, 3), right-multiplied
    translation: np.ndarray | None  # (3,)
    source: str = "sweep"  # names it in messages, e.g. "infos.pkl sample abc sweep 0"


SWEEP_CLOSE_RADIUS = 1.0  # mmdet3d's _remove_close: |x| < 1 and |y| < 1 (the sweep's own frame)


def load_with_sweeps(path: str | Path, cfg: "LidarConfig", sweeps: Sequence[Sweep], *,
                     load_dim: int | None = None, use_dim: int | tuple[int, ...] | None = None,
                     remove_close: bool = True, data_root_hint: str = "--data-root") -> LoadedPoints:
    """The key frame (time column 0) plus `sweeps` moved into its frame, as mmdet3d's test pipeline
    LoadPointsFromFile + LoadPointsFromMultiSweeps(test_mode) + PointsRangeFilter build a scan: each sweep read with
    the same load_dim/use_dim, its points within 1 m of its sensor (x and y) dropped when `remove_close`, then
    transformed, given its time lag, cut to `cfg.use_dim` and to the range. No sweep: exactly `load_point_file`."""
    key = load_point_file(path, cfg, time_lag=0.0, load_dim=load_dim, use_dim=use_dim)
    if not sweeps:
        return key
    parts, read, bad, out = [key.points], key.points_read, key.non_finite_dropped, key.out_of_range_dropped
    warnings = list(key.warnings)
    for sweep in sweeps:
        model = _sweep_points(sweep, cfg, load_dim, use_dim, remove_close, data_root_hint)
        finite = np.isfinite(model).all(axis=1)
        kept = crop_to_range(model[finite], cfg)
        parts.append(kept)
        # a sweep's points are counted after remove_close (mmdet3d drops them before anything else)
        read, bad, out = read + len(model), bad + int((~finite).sum()), out + int(finite.sum()) - len(kept)
        if not finite.all():
            warnings.append(f"{sweep.source}: {int((~finite).sum())} points have NaN/Inf values and were dropped")
    return replace(key, points=np.ascontiguousarray(np.concatenate(parts)), points_read=read, non_finite_dropped=bad,
                   out_of_range_dropped=out, warnings=tuple(warnings), sweeps=len(sweeps))


def check_sweep(sweep: Sweep, hint: str = "--data-root") -> None:
    """One BadInputError unless `sweep` can be added to its key frame: its file exists (`hint`: how to give the data
    root its lidar_path is relative to), and it has a transform and a time lag."""
    if not Path(sweep.path).is_file():
        raise BadInputError(f"{sweep.source}: sweep file {sweep.path} not found; give the data root its lidar_path "
                            f"is relative to ({hint})")
    if sweep.rotation is None or sweep.translation is None:
        raise BadInputError(f"{sweep.source} has no transform to the key frame (lidar_points.lidar2sensor, or "
                            "sensor2lidar_rotation and sensor2lidar_translation): fix the info file, or read no "
                            "sweeps (sweeps_num=0 in the config's LoadPointsFromMultiSweeps)")
    if sweep.time_lag is None:
        raise BadInputError(f"{sweep.source}: the sample or the sweep has no timestamp, so the sweep has no time lag: "
                            "fix the info file, or read no sweeps (sweeps_num=0)")


def _sweep_points(sweep: Sweep, cfg: "LidarConfig", load_dim, use_dim, remove_close: bool,
                  hint: str) -> np.ndarray:
    """One sweep's (M, in_channels) points in the key frame (before the range filter; M after remove_close)."""
    check_sweep(sweep, hint)
    read = _read_features(Path(sweep.path), cfg, load_dim, use_dim)
    feats = read.feats
    if feats is None:  # an .npy of the model's columns: no time column to set
        raise BadInputError(f"{sweep.source}: sweep file {sweep.path} holds the model's {cfg.in_channels} columns, not "
                            "a point file's (x, y, z, intensity, time): give it with its file columns")
    if remove_close:
        close = (np.abs(feats[:, 0]) < SWEEP_CLOSE_RADIUS) & (np.abs(feats[:, 1]) < SWEEP_CLOSE_RADIUS)
        feats = feats[~close]
    feats = feats.copy()
    feats[:, :3] = feats[:, :3] @ np.asarray(sweep.rotation, np.float64)
    feats[:, :3] += np.asarray(sweep.translation, np.float64)
    return model_columns(feats, cfg, float(sweep.time_lag))


def points_from_array(array: np.ndarray, cfg: "LidarConfig", source: str) -> LoadedPoints:
    """`prepare_points`, then the range filter, with the counts (e.g. for a synthetic scene)."""
    model = prepare_points(array, cfg, source=source)
    return _cropped(model, cfg, source, "synthetic", None, None, tuple(FILE_FEATURES[i] for i in cfg.use_dim), (), ())


# -- reading ---------------------------------------------------------------------------------------------
def _read_bin(path: Path, load_dim: int | None, cfg: "LidarConfig") -> np.ndarray:
    size = path.stat().st_size
    if size == 0:
        raise BadInputError(f"point file {path} is empty: it holds no points")
    want = load_dim or cfg.load_dim
    if size % (4 * want) == 0:
        return np.fromfile(path, dtype=np.float32).reshape(-1, want)
    fits = [n for n in _FIT_COLUMNS if size % (4 * n) == 0]
    flags = " or ".join(f"`--load-dim {n}`" for n in fits)
    what = (f"--load-dim {load_dim}" if load_dim
            else f"{want} columns (the default of preset {cfg.name!r}, as nuScenes/T4 .pcd.bin)")
    if not fits:
        raise BadInputError(
            f"point file {path} has {size} bytes, which fits no float32 layout of {_FIT_COLUMNS[0]} to "
            f"{_FIT_COLUMNS[-1]} columns (not {what}): it is truncated or not float32; copy it again or save it as .npy"
        )
    kitti = " (KITTI velodyne files hold 4: x, y, z, intensity)" if 4 in fits else ""
    raise BadInputError(
        f"point file {path} has {size} bytes, not whole float32 rows of {what}; it would fit "
        f"{', '.join(str(n) for n in fits)} columns{kitti}: add {flags}"
    )


def _read_numpy(path: Path, suffix: str) -> np.ndarray:
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise BadInputError(f"point file {path} is not a readable .npy array ({err}); "
                                "re-save it with numpy.save") from None
    try:
        with np.load(path, allow_pickle=False) as data:
            if "points" not in data.files:
                raise BadInputError(
                    f"point file {path} has no array named 'points' (it has: {', '.join(data.files) or 'none'}); "
                    "save it with numpy.savez(path, points=array)"
                )
            return data["points"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise BadInputError(f"point file {path} is not a readable .npz archive ({err}); re-save "
                            "it with numpy.savez") from None


def _use_columns(use_dim: int | tuple[int, ...] | None, ncol: int, source: str) -> tuple[int, ...]:
    if use_dim is None:
        return tuple(range(min(ncol, FILE_COLUMNS)))
    cols = tuple(range(use_dim)) if isinstance(use_dim, int) else tuple(use_dim)
    flag = f"--use-dim {use_dim if isinstance(use_dim, int) else ','.join(map(str, use_dim))}"
    if any(c >= ncol for c in cols):
        raise BadInputError(f"{flag} picks column {max(cols)} but {source} has {ncol} columns (0 to {ncol - 1}); "
                            f"fix --use-dim or --load-dim")
    if not 3 <= len(cols) <= FILE_COLUMNS:
        raise BadInputError(f"{flag} keeps {len(cols)} columns; the model reads 3 to {FILE_COLUMNS} "
                            f"({', '.join(FILE_FEATURES)}, in that order)")
    return cols


def _pcd_features(cloud, source: str) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    missing = [a for a in "xyz" if a not in cloud.columns]
    if missing:
        raise BadInputError(f"{source} has no PCD field {', '.join(missing)} (fields: {' '.join(cloud.fields)}); "
                            "a point cloud needs x, y and z")
    if cloud.num_points == 0:
        raise BadInputError(f"{source} holds no points")
    names = {"x": "x", "y": "y", "z": "z", "intensity": "intensity"}
    names["time"] = next((t for t in PCD_TIME_FIELDS if t in cloud.columns), "")
    feats = np.zeros((cloud.num_points, FILE_COLUMNS), np.float32)
    read = []
    for i, feature in enumerate(FILE_FEATURES):
        field = names[feature]
        if field and field in cloud.columns:
            feats[:, i] = cloud.columns[field]
            read.append(feature if field == feature else f"{feature}={field}")
    return feats, tuple(read), tuple(cloud.fields)


def _finish(feats, columns, cfg, time_lag, source, fmt, load_dim, use_dim, pcd_fields) -> LoadedPoints:
    """(M, 5) features (missing ones zero) -> the model's columns; says which model features were zero-filled."""
    have = {c.split("=")[0] for c in columns}
    filled = tuple(FILE_FEATURES[i] for i in cfg.use_dim if FILE_FEATURES[i] not in have)
    warnings = []
    if filled:
        stored = (f"fields {' '.join(pcd_fields)}" if pcd_fields
                  else f"{len(columns)} columns read ({', '.join(columns)})")
        lag = " (0 is also the key frame's time lag AWML sets)" if "time" in filled and time_lag == 0 else ""
        warnings.append(f"{source} has no {' or '.join(filled)} column ({stored}): preset {cfg.name!r} reads "
                        f"{', '.join(FILE_FEATURES[i] for i in cfg.use_dim)}, so {', '.join(filled)} was "
                        f"zero-filled{lag}")
    return _cropped(model_columns(feats, cfg, time_lag), cfg, source, fmt, load_dim, use_dim, tuple(columns),
                    filled, warnings)


def _cropped(model, cfg, source, fmt, load_dim, use_dim, columns, filled, warnings) -> LoadedPoints:
    """Drop points with NaN/Inf values (counted, a warning) and points outside the range (counted)."""
    warnings = list(warnings)
    finite = np.isfinite(model).all(axis=1)
    bad = int((~finite).sum())
    if bad:
        warnings.append(f"{source}: {bad} of {len(model)} points have NaN/Inf values and were dropped")
    kept = crop_to_range(model[finite], cfg)
    if len(kept) == 0:
        lo, hi = cfg.point_cloud_range[:3], cfg.point_cloud_range[3:]
        raise BadInputError(
            f"{source}: none of its {len(model)} points lies inside preset {cfg.name!r}'s point_cloud_range "
            f"(x {lo[0]:g}..{hi[0]:g}, y {lo[1]:g}..{hi[1]:g}, z {lo[2]:g}..{hi[2]:g} m)"
            f"{f' ({bad} have NaN/Inf values)' if bad else ''}: check the file's units and frame "
            "(and --load-dim), or pick a preset with a wider range"
        )
    return LoadedPoints(points=np.ascontiguousarray(kept), source=source, file_format=fmt, load_dim=load_dim,
                        use_dim=use_dim, columns=columns, zero_filled=filled, points_read=int(len(model)),
                        non_finite_dropped=bad, out_of_range_dropped=int(len(model) - bad - len(kept)),
                        warnings=tuple(warnings))

"""mmdet3d v1.x info files (`.pkl`): write the synthetic scenes' ground truth, read them and real ones.

Layout (mmdet3d >= 1.1, AWML): `{"metainfo": {"categories": {name: id}, ...}, "data_list": [{"sample_idx",
"token", "lidar_points": {"lidar_path", "num_pts_feats"}, "instances": [{"bbox_3d": [x, y, z, dx, dy, dz,
yaw], "bbox_label_3d", "velocity": [vx, vy], ...}]}]}`. mmdet3d's LiDAR box z is the bottom centre and
dx, dy, dz are l, w, h, so a `bbox_3d` plus its velocity is exactly a (9,) box of the decoder's convention.

Reading tolerates what real files do: `lidar_path` relative to a data root (default: the info file's folder),
instances without velocity (zeros; NaN velocities become zeros too), labels of -1 (mmdet3d's "ignored") and
categories outside the five classes (both dropped), labels mapped by category name when the file has them.
Files are unpickled with a restricted unpickler (plain containers and numpy only; no code runs).

Sweeps (T4 / AWML, nuScenes): each sample's `lidar_sweeps` are kept as `Sweep`s, their `lidar_path` resolved
against the data root like the key frame's. The transform is mmdet3d v1.x's `lidar_points.lidar2sensor` (4x4;
applied as mmdet3d's LoadPointsFromMultiSweeps does: `xyz @ M[:3, :3] - M[:3, 3]`) or, failing that, v0.x's
`sensor2lidar_rotation` / `sensor2lidar_translation` (`xyz @ R.T + t`). The time lag is the sample's `timestamp`
minus the sweep's, in seconds: mmdet3d v1.x files store seconds; timestamps above 1e11 are microseconds (v0.x,
nuScenes tables) and are divided by 1e6 first, as mmdet3d v0.x does.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cp_debug.files import write_bytes_atomic
from cp_debug.errors import BadInputError
from cp_debug.lidar.space import CLASS_NAMES
from cp_debug.data.point_files import Sweep, check_sweep

INFO_FILE = "infos.pkl"
MICROSECONDS_ABOVE = 1e11  # a timestamp this large is in µs (seconds since 1970 are ~1.7e9, µs ~1.7e15)
POINTS_DIR = "points"


@dataclass(frozen=True)
class InfoSample:
    """One sample's ground truth: boxes (K, 9) float32 [x, y, z_bottom, l, w, h, yaw, vx, vy], labels (K,)
    int64 into `class_names`, the point file's resolved path."""

    token: str
    lidar_path: Path
    boxes: np.ndarray
    labels: np.ndarray
    sample_idx: int = 0
    num_lidar_pts: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    class_names: tuple[str, ...] = CLASS_NAMES
    timestamp: float | None = None  # the key frame's, seconds
    sweeps: tuple[Sweep, ...] = ()  # `lidar_sweeps` in the file's order (nearest first in T4 / nuScenes files)


def info_entry(sample_idx: int, token: str, lidar_path: str, boxes: np.ndarray, labels: np.ndarray,
               num_lidar_pts: Sequence[int] | None = None) -> dict:
    """One `data_list` entry in mmdet3d's layout."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    instances = []
    for k, (box, label) in enumerate(zip(boxes, np.asarray(labels).reshape(-1))):
        inst = {"bbox_3d": [float(v) for v in box[:7]], "bbox_label_3d": int(label), "bbox_label": int(label),
                "velocity": [float(box[7]), float(box[8])], "bbox_3d_isvalid": True}
        if num_lidar_pts is not None:
            inst["num_lidar_pts"] = int(num_lidar_pts[k])
        instances.append(inst)
    return {"sample_idx": int(sample_idx), "token": str(token), "timestamp": 0.0,
            "lidar_points": {"lidar_path": str(lidar_path), "num_pts_feats": 5}, "instances": instances}


def write_infos(path: str | Path, entries: Iterable[dict], class_names: Sequence[str] = CLASS_NAMES,
                dataset: str = "cp_debug synthetic scenes") -> Path:
    """Write `{"metainfo", "data_list"}` atomically (temp file + rename)."""
    data = {"metainfo": {"categories": {name: i for i, name in enumerate(class_names)}, "dataset": dataset,
                         "info_version": "1.1"},
            "data_list": list(entries)}
    return write_bytes_atomic(path, pickle.dumps(data, protocol=4), parents=True)


def _load_pickle(p: Path):
    from cp_debug.pickles import RestrictedUnpickler

    try:
        with open(p, "rb") as f:
            return RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, IndexError) as err:
        raise BadInputError(f"info file {p} is not a readable pickle ({type(err).__name__}: {err}); "
                            "give an mmdet3d v1.x info .pkl") from None


def _info_path(path_or_dir: str | Path) -> Path:
    p = Path(path_or_dir)
    if p.is_dir():
        if (p / INFO_FILE).is_file():
            return p / INFO_FILE
        pkls = sorted(p.glob("*.pkl"))
        if len(pkls) != 1:
            raise BadInputError(f"{p} holds {len(pkls)} .pkl files and no {INFO_FILE}: give the info file itself")
        return pkls[0]
    if not p.is_file():
        raise BadInputError(f"info file {p} does not exist (give a scenes folder from `cpdebug scenes` "
                            "or an mmdet3d .pkl)")
    return p


def _label_map(metainfo: dict, class_names: Sequence[str]) -> dict[int, int] | None:
    cats = metainfo.get("categories") if isinstance(metainfo, dict) else None
    if not isinstance(cats, dict) or not cats:
        return None  # labels are taken as indices into class_names
    return {int(i): class_names.index(name) for name, i in cats.items() if name in class_names}


def _sample(entry: dict, i: int, root: Path, labels_of: dict[int, int] | None, class_names: Sequence[str],
            source: Path) -> InfoSample:
    lp = (entry.get("lidar_points") or {}).get("lidar_path") if isinstance(entry, dict) else None
    if not lp:
        raise BadInputError(f"{source}: data_list[{i}] has no lidar_points.lidar_path; is it an "
                            "mmdet3d v1.x info file?")
    path = Path(lp)
    if not path.is_absolute():
        path = root / path
    boxes, labels, npts = [], [], []
    for inst in entry.get("instances") or []:
        box = inst.get("bbox_3d")
        label = int(inst.get("bbox_label_3d", inst.get("bbox_label", -1)))
        if box is None or len(box) < 7 or label < 0:
            continue
        if labels_of is not None:
            if label not in labels_of:
                continue
            label = labels_of[label]
        elif label >= len(class_names):
            continue
        vel = inst.get("velocity")
        if vel is None and len(box) >= 9:
            vel = box[7:9]
        vel = np.nan_to_num(np.asarray(vel if vel is not None else (0.0, 0.0), dtype=np.float64)[:2])
        boxes.append([*map(float, box[:7]), *vel])
        labels.append(label)
        npts.append(int(inst.get("num_lidar_pts", -1)))
    token = str(entry.get("token", entry.get("sample_idx", i)))
    key_ts = _seconds(entry.get("timestamp"))
    sweeps = tuple(_sweep(sw, j, root, key_ts, f"{source} sample {token} sweep {j}")
                   for j, sw in enumerate(entry.get("lidar_sweeps") or []))
    return InfoSample(
        token=token, lidar_path=path, timestamp=key_ts, sweeps=sweeps,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 9), labels=np.asarray(labels, dtype=np.int64),
        sample_idx=int(entry.get("sample_idx", i)), num_lidar_pts=np.asarray(npts, dtype=np.int64),
        class_names=tuple(class_names),
    )


def _seconds(value) -> float | None:
    if value is None:
        return None
    t = float(value)
    return t / 1e6 if abs(t) > MICROSECONDS_ABOVE else t


def _matrix(value, shape: tuple[int, ...]) -> np.ndarray | None:
    if value is None:
        return None
    m = np.asarray(value, dtype=np.float64)
    return m if m.shape == shape else None


def _sweep(sw, j: int, root: Path, key_ts: float | None, source: str) -> Sweep:
    """One `lidar_sweeps` entry (mmdet3d v1.x `lidar_points.lidar2sensor`, or v0.x sensor2lidar keys)."""
    if not isinstance(sw, dict):
        raise BadInputError(f"{source} is not a dict; is it an mmdet3d v1.x info file?")
    pts = sw.get("lidar_points") if isinstance(sw.get("lidar_points"), dict) else {}
    lp = pts.get("lidar_path", sw.get("lidar_path", sw.get("data_path")))
    if not lp:
        raise BadInputError(f"{source} has no lidar_points.lidar_path; is it an mmdet3d v1.x info file?")
    path = Path(lp) if Path(lp).is_absolute() else root / lp
    rotation = translation = None
    l2s = _matrix(pts.get("lidar2sensor"), (4, 4))
    if l2s is not None:
        rotation, translation = l2s[:3, :3], -l2s[:3, 3]
    else:
        rot = _matrix(sw.get("sensor2lidar_rotation", pts.get("sensor2lidar_rotation")), (3, 3))
        trans = _matrix(sw.get("sensor2lidar_translation", pts.get("sensor2lidar_translation")), (3,))
        if rot is not None and trans is not None:
            rotation, translation = rot.T, trans
    sweep_ts = _seconds(sw.get("timestamp"))
    lag = None if key_ts is None or sweep_ts is None else key_ts - sweep_ts
    return Sweep(path, lag, rotation, translation, source)


def read_infos(path_or_dir: str | Path, data_root: str | Path | None = None,
               class_names: Sequence[str] = CLASS_NAMES, check_files: bool = True,
               sweeps_num: int = 0) -> list[InfoSample]:
    """The samples of an info file (or of DIR/infos.pkl). Relative lidar paths (key frames and sweeps) are joined
    to `data_root` (default: the info file's folder); with `check_files`, a missing point file is one clear error,
    and so is a missing file or transform among the first `sweeps_num` sweeps of a sample (those a test pipeline
    with LoadPointsFromMultiSweeps(sweeps_num) reads)."""
    p = _info_path(path_or_dir)
    data = _load_pickle(p)
    if isinstance(data, dict) and "infos" in data and "data_list" not in data:
        raise BadInputError(f"{p} is an mmdet3d v0.x info file ('infos'); convert it to v1.x "
                            "(mmdet3d tools/dataset_converters/update_infos_to_v2.py)")
    if not isinstance(data, dict) or not isinstance(data.get("data_list"), list):
        raise BadInputError(f"{p} has no 'data_list' list: it is not an mmdet3d v1.x info file")
    root = Path(data_root) if data_root is not None else p.parent
    try:
        labels_of = _label_map(data.get("metainfo") or {}, list(class_names))
        samples = [_sample(e, i, root, labels_of, class_names, p) for i, e in enumerate(data["data_list"])]
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as err:  # a value of another type or shape
        why = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise BadInputError(f"{p} is not an mmdet3d v1.x info file cp_debug can read ({why}); write it again with "
                            "mmdet3d's converter") from None
    if check_files:
        missing = [s.lidar_path for s in samples if not s.lidar_path.is_file()]
        if missing:
            raise BadInputError(f"{p}: {len(missing)} of {len(samples)} point file(s) not found, e.g. {missing[0]}; "
                                "give the data root the lidar paths are relative to (--data-root)")
        for s in samples:
            for sweep in s.sweeps[:sweeps_num]:
                check_sweep(sweep, f"--data-root; now {root}")
    return samples


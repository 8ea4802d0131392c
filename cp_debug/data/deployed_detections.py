"""A deployment's detections as other tools write them, read (and written, for tests) into the decoder's layout.

Boxes come back as `Detections` keyed by sample token, in [x, y, z_bottom, l, w, h, yaw, vx, vy] with yaw the
heading of the box's length axis (the layout of `models/centerpoint/decode.py`).

- NVIDIA CUDA-CenterPoint (Lidar_AI_Solution): one `<token>.txt` per frame, one box per line,
  `x y z w l h vx vy rt id score` (its `SaveBoxPred`). The model is det3d's (tianweiy/CenterPoint): z is the
  gravity centre, (w, l, h) nuScenes' size order, and rt = -yaw - pi/2 (det3d's nuScenes conversion), so
  yaw = -rt - pi/2. `id` indexes det3d's ten nuScenes classes (`CUDA_CENTERPOINT_CLASSES`); boxes of classes the
  model does not have are skipped and counted.
- mmdet3d results `.pkl` (`tools/test.py --out`): a list with one dict per sample holding `pred_instances_3d`
  (mmdet3d 1.x) or `pts_bbox` (0.x) with `bboxes_3d`/`boxes_3d` (LiDARInstance3DBoxes: its `tensor`, already our
  layout, or a plain tensor/array), `scores_3d`, `labels_3d`; the sample's token is its `token`, else the stem of
  its `lidar_path`, else `sample_idx`. mmdet3d need not be installed: its classes are read as plain state.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.lidar.boxes import Detections

CUDA_CENTERPOINT_CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle",
                            "bicycle", "pedestrian", "traffic_cone")


@dataclass(frozen=True)
class DeployedDetections:
    """Detections by sample token, where they came from, and how many boxes of unknown classes were skipped."""

    frames: dict[str, Detections]
    source: str
    skipped: int = 0


def _sorted(boxes, scores, labels, class_names) -> Detections:
    if not len(boxes):
        return Detections.empty(tuple(class_names))
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 9)[order], np.asarray(scores, np.float32)[order],
                      np.asarray(labels, np.int64)[order], tuple(class_names))


# -- CUDA-CenterPoint txt folder --------------------------------------------------------------------------------
def read_cuda_centerpoint(folder: str | os.PathLike, class_names: Sequence[str]) -> DeployedDetections:
    """Every `<token>.txt` of `folder` (see the module docstring for the columns and conventions)."""
    d = Path(folder)
    if not d.is_dir():
        raise BadInputError(f"{d} is not a folder of CUDA-CenterPoint prediction files (<token>.txt)")
    files = sorted(d.glob("*.txt"))
    if not files:
        raise BadInputError(f"{d} holds no .txt prediction file; CUDA-CenterPoint writes one <token>.txt per frame")
    index = {c: i for i, c in enumerate(class_names)}
    frames, skipped = {}, 0
    for f in files:
        arr = _txt_rows(f)
        if not np.isfinite(arr).all():
            raise BadInputError(f"{f}: a value is not finite; expected 11 numbers per line: x y z w l "
                                "h vx vy rt id score")
        boxes, scores, labels = [], [], []
        for x, y, z, w, length, h, vx, vy, rt, cid, score in arr:
            name = CUDA_CENTERPOINT_CLASSES[int(cid)] if 0 <= int(cid) < len(CUDA_CENTERPOINT_CLASSES) else None
            if name not in index:
                skipped += 1
                continue
            yaw = math.remainder(-rt - math.pi / 2, 2 * math.pi)
            boxes.append([x, y, z - h / 2, length, w, h, yaw, vx, vy])
            scores.append(score)
            labels.append(index[name])
        frames[f.stem] = _sorted(boxes, scores, labels, class_names)
    return DeployedDetections(frames, f"CUDA-CenterPoint predictions {d}", skipped)


def _txt_rows(f: Path) -> np.ndarray:
    expected = "expected 11 numbers per line: x y z w l h vx vy rt id score"
    try:
        lines = [line.split() for line in f.read_text().splitlines() if line.strip()]
    except (UnicodeDecodeError, OSError) as err:
        raise BadInputError(f"{f}: not a CUDA-CenterPoint prediction file ({type(err).__name__}); {expected}") from None
    for n, row in enumerate(lines, 1):
        try:
            if len(row) != 11:
                raise ValueError
            [float(v) for v in row]
        except ValueError:
            raise BadInputError(f"{f} line {n}: {' '.join(row)[:60]!r} is not a prediction; {expected}") from None
    return np.array(lines, np.float64).reshape(-1, 11)


def write_cuda_centerpoint(folder: str | os.PathLike, frames: Mapping[str, Detections],
                           class_names: Sequence[str]) -> Path:
    """The inverse of `read_cuda_centerpoint`: one `<token>.txt` per frame, 5 decimals as CUDA-CenterPoint's."""
    from cp_debug.files import write_text_atomic

    d = Path(folder)
    for token, det in frames.items():
        lines = []
        for b, s, lab in zip(det.boxes.astype(np.float64), det.scores, det.labels):
            x, y, zb, length, w, h, yaw, vx, vy = b
            rt = math.remainder(-yaw - math.pi / 2, 2 * math.pi)
            cid = CUDA_CENTERPOINT_CLASSES.index(class_names[int(lab)])
            vals = (x, y, zb + h / 2, w, length, h, vx, vy, rt, cid, s)
            lines.append(" ".join(f"{v:.5f}" for v in vals) + " \n")
        write_text_atomic(d / f"{token}.txt", "".join(lines), parents=True)
    return d


# -- mmdet3d results pkl ----------------------------------------------------------------------------------------
class _State:
    """Stands in for a class the pickle names that is not importable here (mmdet3d's boxes): keeps its state."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


class _Unpickler(pickle.Unpickler):
    _REAL = ("torch", "numpy", "collections", "builtins", "copyreg", "_codecs")

    def find_class(self, module: str, name: str):
        if module.split(".")[0] in self._REAL:
            return super().find_class(module, name)
        return type(name, (_State,), {"__module__": "cp_debug.data.deployed_detections"})


def _array(v: Any, what: str, where: str) -> np.ndarray:
    if isinstance(v, _State):
        v = getattr(v, "tensor", None)
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: {what} is a {type(v).__name__}, not an array") from None


def _token(sample: Mapping, i: int) -> str:
    meta = sample.get("metainfo", sample) if isinstance(sample.get("metainfo"), Mapping) else sample
    for src in (sample, meta):
        if isinstance(src.get("token"), str):
            return src["token"]
        if isinstance(src.get("lidar_path"), str):
            return Path(src["lidar_path"]).name.split(".")[0]
    idx = sample.get("sample_idx", meta.get("sample_idx"))
    return str(idx) if idx is not None else str(i)


def read_mmdet3d_pkl(path: str | os.PathLike, class_names: Sequence[str]) -> DeployedDetections:
    """Per-sample predictions of an mmdet3d results pickle (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{p} does not exist; give an mmdet3d results .pkl (tools/test.py --out)")
    try:
        with open(p, "rb") as f:
            obj = _Unpickler(io.BytesIO(f.read())).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError,
            OSError) as err:
        raise BadInputError(f"{p} is not a readable results pickle ({type(err).__name__}); expected mmdet3d's "
                            "tools/test.py --out file") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("results"), list):
        obj = obj["results"]
    if not isinstance(obj, list) or not obj:
        raise BadInputError(f"{p}: the pickle holds a {type(obj).__name__}, not a non-empty list of per-sample results")
    frames: dict[str, Detections] = {}
    for i, sample in enumerate(obj):
        where = f"{p}: sample {i}"
        if not isinstance(sample, Mapping):
            raise BadInputError(f"{where} is a {type(sample).__name__}, not a dict")
        pred = sample.get("pred_instances_3d", sample.get("pts_bbox", sample))
        if not isinstance(pred, Mapping):
            pred = getattr(pred, "__dict__", {})  # an InstanceData read as plain state
        box_key = next((k for k in ("bboxes_3d", "boxes_3d") if k in pred), None)
        if box_key is None or "scores_3d" not in pred or "labels_3d" not in pred:
            raise BadInputError(f"{where} has no pred_instances_3d / pts_bbox with bboxes_3d, scores_3d, labels_3d "
                                f"(keys: {', '.join(map(str, sample))})")
        boxes = _array(pred[box_key], box_key, where)
        scores = _array(pred["scores_3d"], "scores_3d", where).reshape(-1)
        labels = _array(pred["labels_3d"], "labels_3d", where).reshape(-1).astype(np.int64)
        if boxes.ndim != 2 or boxes.shape[1] not in (7, 9) or not len(boxes) == len(scores) == len(labels):
            raise BadInputError(f"{where}: boxes of shape {boxes.shape} with {len(scores)} scores and {len(labels)} "
                                "labels; expected (N, 7 or 9) boxes, one score and label each")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise BadInputError(f"{where}: a label outside 0..{len(class_names) - 1} ({', '.join(class_names)})")
        if boxes.shape[1] == 7:
            boxes = np.concatenate([boxes, np.zeros((len(boxes), 2))], 1)
        token = _token(sample, i)
        if token in frames:
            raise BadInputError(f"{p}: sample token {token!r} appears twice")
        frames[token] = _sorted(boxes, scores, labels, class_names)
    return DeployedDetections(frames, f"mmdet3d results {p}")


def write_mmdet3d_pkl(path: str | os.PathLike, frames: Mapping[str, Detections]) -> Path:
    """An mmdet3d 1.x-style results pickle: [{"token", "pred_instances_3d": {bboxes_3d, scores_3d, labels_3d}}]."""
    from cp_debug.files import write_bytes_atomic

    out = [{"token": t, "lidar_path": f"{t}.pcd.bin",
            "pred_instances_3d": {"bboxes_3d": d.boxes.astype(np.float32), "scores_3d": d.scores.astype(np.float32),
                                  "labels_3d": d.labels.astype(np.int64)}} for t, d in frames.items()]
    return write_bytes_atomic(path, pickle.dumps(out, protocol=4))

"""nuScenes detection submission files: write ours, read a deployment's, and say exactly what is wrong.

`{"meta": {...}, "results": {sample_token: [{"sample_token", "translation": [x, y, z_centre], "size": [w, l, h],
"rotation": [w, x, y, z], "velocity": [vx, vy], "detection_name", "detection_score", "attribute_name"}]}}`.
A file that does not follow this is one BadInputError naming the first problem (exit 2), never a silent mAP
of 0. Scores outside [0, 1] are not a format error: they are evidence for a diagnosis (logits?).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.eval.boxes import SampleBoxes, box_from_nuscenes, box_to_nuscenes

MAX_BOXES_PER_SAMPLE = 500  # nuScenes' limit (DetectionConfig.max_boxes_per_sample)
BOX_KEYS = {"sample_token": str, "translation": 3, "size": 3, "rotation": 4, "velocity": 2,
            "detection_name": str, "detection_score": float, "attribute_name": str}
DEFAULT_META = {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False, "use_external": False}


def boxes_to_records(token: str, sb: SampleBoxes, class_names: Sequence[str]) -> list[dict]:
    """One sample's boxes as results-format records (ground truth gets detection_score -1, as the devkit's)."""
    out = []
    for i in range(len(sb)):
        rec = {"sample_token": token, **box_to_nuscenes(sb.boxes[i]),
               "detection_name": class_names[int(sb.labels[i])],
               "detection_score": float(sb.scores[i]) if sb.scores is not None else -1.0,
               "attribute_name": ""}
        out.append(rec)
    return out


def to_results(detections: Mapping[str, SampleBoxes], class_names: Sequence[str], meta: dict | None = None) -> dict:
    """A submission dict for `detections` keyed by sample token."""
    return {"meta": dict(meta or DEFAULT_META),
            "results": {t: boxes_to_records(t, sb, class_names) for t, sb in detections.items()}}


def write_results(path: str | Path, detections: Mapping[str, SampleBoxes], class_names: Sequence[str],
                  meta: dict | None = None) -> Path:
    from cp_debug.files import write_json

    return write_json(path, to_results(detections, class_names, meta), indent=None)


def _fail(where: str, what: str) -> BadInputError:
    return BadInputError(f"{where}: {what} (expected the nuScenes detection submission format: "
                         "{\"meta\": {...}, \"results\": {sample_token: [box, ...]}})")


def _number_list(where: str, key: str, value, n: int) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise _fail(where, f"{key!r} must be a list of {n} numbers, got {json.dumps(value)[:60]}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise _fail(where, f"{key!r} must hold numbers, got {json.dumps(value)[:60]}")
    return [float(v) for v in value]


def _record(where: str, token: str, rec: Any, class_index: dict[str, int]) -> tuple[np.ndarray, int, float]:
    if not isinstance(rec, dict):
        raise _fail(where, f"a box must be an object, got {type(rec).__name__}")
    missing = [k for k in BOX_KEYS if k not in rec]
    if missing:
        raise _fail(where, f"box lacks key(s) {', '.join(missing)}")
    for key in ("sample_token", "detection_name", "attribute_name"):
        if not isinstance(rec[key], str):
            raise _fail(where, f"{key!r} must be a string, got {type(rec[key]).__name__}")
    if rec["sample_token"] != token:
        raise _fail(where, f"box sample_token {rec['sample_token']!r} differs from its results key {token!r}")
    if rec["detection_name"] not in class_index:
        raise _fail(where, f"unknown detection_name {rec['detection_name']!r}; this model's classes are "
                           f"{', '.join(class_index)}")
    score = rec["detection_score"]
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(float(score)):
        raise _fail(where, f"'detection_score' must be a number (finite), got {json.dumps(score)[:40]}")
    vals = {k: _number_list(where, k, rec[k], n) for k, n in BOX_KEYS.items() if isinstance(n, int)}
    for key in ("translation", "rotation"):
        if not all(math.isfinite(v) for v in vals[key]):
            raise _fail(where, f"{key!r} must hold finite numbers, got {vals[key]}")
    if any(v <= 0 or not math.isfinite(v) for v in vals["size"]):
        raise _fail(where, f"'size' must be three positive lengths [w, l, h], got {vals['size']}")
    if not math.isclose(math.fsum(v * v for v in vals["rotation"]), 1.0, abs_tol=1e-3):
        raise _fail(where, f"'rotation' {vals['rotation']} is not a unit quaternion [w, x, y, z]")
    box = box_from_nuscenes(vals["translation"], vals["size"], vals["rotation"], vals["velocity"])
    return box, class_index[rec["detection_name"]], float(score)


def parse_results(obj: Any, class_names: Sequence[str], source: str = "results") -> tuple[dict[str, SampleBoxes], dict]:
    """(detections by sample token, meta) of a submission dict; BadInputError on the first format problem."""
    if not isinstance(obj, dict):
        raise _fail(source, f"the top level is a {type(obj).__name__}, not an object")
    for key in ("meta", "results"):
        if key not in obj:
            raise _fail(source, f"missing top-level key {key!r}")
    if not isinstance(obj["meta"], dict):
        raise _fail(source, f"'meta' must be an object, got {type(obj['meta']).__name__}")
    if not isinstance(obj["results"], dict):
        raise _fail(source, f"'results' must be an object keyed by sample token, got {type(obj['results']).__name__}")
    class_index = {c: i for i, c in enumerate(class_names)}
    out: dict[str, SampleBoxes] = {}
    for token, recs in obj["results"].items():
        where = f"{source}: results[{token!r}]"
        if not isinstance(recs, list):
            raise _fail(where, f"must be a list of boxes, got {type(recs).__name__}")
        if len(recs) > MAX_BOXES_PER_SAMPLE:
            raise _fail(where, f"{len(recs)} boxes; nuScenes allows at most {MAX_BOXES_PER_SAMPLE} per sample")
        parsed = [_record(f"{where}[{i}]", token, r, class_index) for i, r in enumerate(recs)]
        out[token] = SampleBoxes(
            np.array([p[0] for p in parsed], dtype=np.float64).reshape(-1, 9),
            np.array([p[1] for p in parsed], dtype=np.int64),
            np.array([p[2] for p in parsed], dtype=np.float64),
        )
    return out, obj["meta"]


def read_results(path: str | Path, class_names: Sequence[str], scene_tokens: Sequence[str] | None = None
                 ) -> tuple[dict[str, SampleBoxes], dict, list[str]]:
    """Read a submission file. With `scene_tokens`, tokens that match no scene are an error; returns
    (detections, meta, tokens of scenes the file has no entry for)."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"--detections {p} does not exist")
    try:
        with open(p) as f:
            obj = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BadInputError(f"{p} is not JSON ({err}); expected a nuScenes detection submission file") from None
    except OSError as err:
        from cp_debug.files import os_reason

        raise BadInputError(f"cannot read --detections {p}: {os_reason(err)}") from None
    dets, meta = parse_results(obj, class_names, str(p))
    absent: list[str] = []
    if scene_tokens is not None:
        known = set(scene_tokens)
        unknown = sorted(set(dets) - known)
        if unknown:
            raise BadInputError(
                f"{p}: {len(unknown)} of {len(dets)} sample token(s) match no scene, e.g. {unknown[0]!r} "
                f"(scene tokens look like {sorted(known)[0]!r}: the scene file stems); evaluate with the same --scenes"
            )
        absent = [t for t in scene_tokens if t not in dets]
        if scene_tokens and len(absent) == len(scene_tokens):
            raise BadInputError(f"{p}: 'results' has no entry for any of the {len(absent)} scene(s); "
                                "nothing to evaluate")
    return dets, meta, absent

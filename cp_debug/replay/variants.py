"""The deployment-glue variants a replay tries: each is the reference's glue with one thing done as deployments
get it wrong, so that the variant whose boxes come closest to the deployment's names its glue.

Three kinds, cheapest first:
- `box`: a pure function of the reference's boxes (the convention the boxes are published in): yaw from the
  y axis (Autoware's `-yaw - pi/2` for a model that needs none), yaw +-pi/2 or negated, z published at the
  bottom or read as the bottom, length/width swapped, per-class score thresholds (fitted to the deployment's
  lowest score per class).
- `box` in score space: the reference's boxes with their scores published through a monotone map — logits (no
  sigmoid), a second sigmoid, or a scale / affine map fitted to the boxes that agree in all but the score; each
  carries its fit (boxes, largest residual) for the verdict.
- `decode`: the reference's raw head maps decoded again: the heatmap without sigmoid (logits as scores), with
  two sigmoids, circle NMS with another radius or none, rotated-IoU NMS instead, other pre/post max sizes.
- `rerun`: the engines run again on the frame's points: point order shuffled before voxelization (seeded; with
  the preset's or a smaller `max_voxels` cap and the 32-points-per-pillar cap), a smaller `max_voxels` alone,
  the voxel features zero-padded (decorations left at 0) instead of computed, or processed where raw belongs
  (mmdet3d's `legacy=True` PillarFeatureNet writes the pillar-centre offsets over the raw x, y).

A variant is a frozen description (`GlueVariant`); `engine.py` applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from cp_debug.lidar.boxes import Detections

REFERENCE = "reference glue"
SCORE_SPACE = "score space"
SCALE_EPS = 1e-3  # a fitted map this close to the identity (|scale - 1|, |offset|) is no variant


@dataclass(frozen=True)
class GlueVariant:
    """name: what the verdict prints; family: the group it belongs to (yaw, z, sigmoid, order, ...);
    kind: box | decode | rerun; params: what the engine needs (and the report shows)."""

    name: str
    family: str
    kind: str
    params: dict = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict:
        return {"name": self.name, "family": self.family, "kind": self.kind, "params": dict(self.params)}


def _wrap(yaw: np.ndarray) -> np.ndarray:
    return (yaw + np.pi) % (2 * np.pi) - np.pi


# name -> (family, function of the (N, 9) boxes)
_BOX_TRANSFORMS = {
    "yaw: y-axis reference (-yaw - pi/2)": ("yaw", lambda b: _set(b, 6, _wrap(-b[:, 6] - math.pi / 2))),
    "yaw: +pi/2": ("yaw", lambda b: _set(b, 6, _wrap(b[:, 6] + math.pi / 2))),
    "yaw: -pi/2": ("yaw", lambda b: _set(b, 6, _wrap(b[:, 6] - math.pi / 2))),
    "yaw: sign flipped": ("yaw", lambda b: _set(b, 6, _wrap(-b[:, 6]))),
    "yaw: +pi": ("yaw", lambda b: _set(b, 6, _wrap(b[:, 6] + math.pi))),
    "z: bottom published as the centre": ("z", lambda b: _set(b, 2, b[:, 2] - b[:, 5] / 2)),
    "z: centre published as the bottom": ("z", lambda b: _set(b, 2, b[:, 2] + b[:, 5] / 2)),
    "size: length and width swapped": ("size", lambda b: _swap_lw(b)),
}


def _set(boxes: np.ndarray, col: int, values: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[:, col] = values
    return out


def _swap_lw(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    out[:, [3, 4]] = boxes[:, [4, 3]]
    return out


def box_variants() -> list[GlueVariant]:
    return [GlueVariant(name, fam, "box") for name, (fam, _) in _BOX_TRANSFORMS.items()]


def apply_box_variant(variant: GlueVariant, dets: Detections) -> Detections:
    """The reference's boxes as `variant` publishes them."""
    if "score_map" in variant.params:
        return Detections(dets.boxes, map_scores(variant.params, dets.scores), dets.labels, dets.class_names)
    if variant.name.startswith("score: per-class thresholds"):
        thr = np.array([variant.params["thresholds"].get(c, np.inf) for c in dets.class_names] or [np.inf])
        keep = dets.scores >= thr[dets.labels] if len(dets) else np.zeros(0, bool)
        return Detections(dets.boxes[keep], dets.scores[keep], dets.labels[keep], dets.class_names)
    fn = _BOX_TRANSFORMS[variant.name][1]
    boxes = fn(dets.boxes.astype(np.float64)).astype(np.float32) if len(dets) else dets.boxes
    return Detections(boxes, dets.scores, dets.labels, dets.class_names)


def fitted_thresholds(deployed: Sequence[Detections], class_names: Sequence[str]) -> GlueVariant | None:
    """Per-class score thresholds at the deployment's lowest score of each class (None: no deployed box)."""
    lows: dict[str, float] = {}
    for d in deployed:
        for lab, s in zip(d.labels, d.scores):
            name = class_names[int(lab)]
            lows[name] = min(lows.get(name, math.inf), float(s))
    if not lows:
        return None
    text = ", ".join(f"{c} {v:.3g}" for c, v in lows.items())
    return GlueVariant(f"score: per-class thresholds ({text})", "score threshold", "box", {"thresholds": lows})


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_SCORE_MAPS = {"logit": ("score: published as logits (sigmoid not applied)", _logit),
               "sigmoid": ("score: sigmoid applied again", _sigmoid)}


def map_scores(params: Mapping, scores: np.ndarray) -> np.ndarray:
    """The reference's scores as a score-space variant publishes them."""
    s = np.asarray(scores, np.float64)
    kind = params["score_map"]
    out = params["scale"] * s + params["offset"] if kind == "affine" else _SCORE_MAPS[kind][1](s)
    return out.astype(np.float32)


def score_variants(reference: np.ndarray, deployed: np.ndarray) -> list[GlueVariant]:
    """The score-space variants, each with its fit on the score pairs (`reference[i]`, `deployed[i]`) of the boxes
    that agree in all but the score: logits, a second sigmoid, and the least-squares affine map where it is not
    the identity (named a scale when its offset is nil)."""
    ref, dep = np.asarray(reference, np.float64), np.asarray(deployed, np.float64)
    out = []
    for kind, (name, _) in _SCORE_MAPS.items():
        params = {"score_map": kind}
        out.append(GlueVariant(name, SCORE_SPACE, "box", {**params, **_fit(params, ref, dep)}))
    if ref.size >= 2 and np.ptp(ref) > 0:
        scale, offset = (float(v) for v in np.polyfit(ref, dep, 1))
        if abs(scale - 1) > SCALE_EPS or abs(offset) > SCALE_EPS:
            if abs(offset) <= SCALE_EPS:
                name, offset = f"score: scaled by {scale:.3g}", 0.0
            else:
                name = f"score: {scale:.3g} × score {offset:+.3g}"
            params = {"score_map": "affine", "scale": scale, "offset": offset}
            out.append(GlueVariant(name, SCORE_SPACE, "box", {**params, **_fit(params, ref, dep)}))
    return out


def _fit(params: dict, ref: np.ndarray, dep: np.ndarray) -> dict:
    """How the map fits the pairs: their count and the largest |deployed - map(reference)|."""
    if not ref.size:
        return {"fit_boxes": 0, "fit_max_residual": None}
    residual = np.abs(dep - map_scores(params, ref).astype(np.float64))
    return {"fit_boxes": int(ref.size), "fit_max_residual": float(residual.max())}


def decode_variants(cfg) -> list[GlueVariant]:
    """Re-decodes of the reference's head maps (see the module docstring)."""
    r = math.sqrt(cfg.nms_dist_sq)
    out = [
        GlueVariant("sigmoid: missing (heatmap logits as scores)", "sigmoid", "decode", {"heat_activation": "none"}),
        GlueVariant("sigmoid: applied twice", "sigmoid", "decode", {"heat_activation": "sigmoid_twice"}),
        GlueVariant("NMS: none", "nms", "decode", {"nms_dist_sq": -1.0}),
        GlueVariant(f"NMS: circle radius {2 * r:g} m (preset {r:g} m)", "nms", "decode",
                    {"nms_dist_sq": 4 * cfg.nms_dist_sq}),
        GlueVariant(f"NMS: circle radius {r / 2:g} m (preset {r:g} m)", "nms", "decode",
                    {"nms_dist_sq": cfg.nms_dist_sq / 4}),
        GlueVariant("NMS: rotated BEV IoU > 0.2 instead of circle", "nms", "decode",
                    {"nms_dist_sq": -1.0, "post_max_size": cfg.max_num, "rotated_iou": 0.2,
                     "keep": cfg.post_max_size}),
        GlueVariant(f"NMS: post max size {cfg.post_max_size // 2} (preset {cfg.post_max_size})", "nms", "decode",
                    {"post_max_size": cfg.post_max_size // 2}),
        GlueVariant(f"decode: pre max size {cfg.max_num // 5} (preset {cfg.max_num})", "nms", "decode",
                    {"max_num": max(1, cfg.max_num // 5)}),
    ]
    return out


def rerun_variants(cfg, seeds: Sequence[int], max_voxels: Sequence[int]) -> list[GlueVariant]:
    """Re-runs of the engines: shuffled point order per seed (with the preset's cap and each of `max_voxels`),
    each smaller cap alone, and zero-padded voxel features."""
    caps = [int(m) for m in dict.fromkeys(max_voxels) if int(m) != cfg.max_voxels]
    out = [GlueVariant("voxel features: zero-padded (decorations not computed)", "voxel features", "rerun",
                       {"features": "zero_padded"}),
           GlueVariant("voxel features: raw x, y overwritten by the pillar-centre offsets (mmdet3d legacy)",
                       "voxel features", "rerun", {"features": "legacy_centre"})]
    for m in caps:
        out.append(GlueVariant(f"max_voxels {m} (preset {cfg.max_voxels})", "max_voxels", "rerun", {"max_voxels": m}))
    for seed in seeds:
        out.append(GlueVariant(f"point order: shuffled (seed {seed})", "point order", "rerun",
                               {"order_seed": int(seed)}))
        for m in caps:
            out.append(GlueVariant(f"point order: shuffled with max_voxels {m} (seed {seed})",
                                   "point order + max_voxels", "rerun", {"order_seed": int(seed), "max_voxels": m}))
    return out


def reference_variant() -> GlueVariant:
    return GlueVariant(REFERENCE, "none", "reference")


def cfg_for(cfg, params: Mapping) -> object:
    """The preset with a decode variant's settings (NMS radius, max sizes)."""
    from dataclasses import replace

    keys = {k: params[k] for k in ("nms_dist_sq", "post_max_size", "max_num") if k in params}
    return replace(cfg, **keys) if keys else cfg


@dataclass(frozen=True)
class NodeGlue:
    """What Autoware's node does after the network, read from its parameter files (`--params`) instead of guessed:
    the voxel cap, circle NMS (a distance in metres), score thresholds per class and distance bin, and the final
    BEV IoU NMS. `files` name where they came from."""

    files: tuple[str, ...]
    max_voxels: int | None = None
    circle_nms_m: float | None = None
    upper_bounds: tuple[float, ...] = ()
    thresholds: tuple[tuple[float, ...], ...] = ()  # [class][bin]
    iou_nms: float | None = None

    @classmethod
    def read(cls, paths, node) -> "NodeGlue":
        """The glue of the files `paths` of Autoware's `node` (a `data.autoware_params.AutowareNode`: the replay
        plug-in's, handed down)."""
        from cp_debug.data.autoware_params import read_params

        p = read_params(paths, node)
        cap = p.ints("model_params.max_voxel_size")
        circle = p.number("post_process_params.circle_nms_dist_threshold")
        iou = p.number("post_process_params.iou_nms_threshold")
        table = p.score_thresholds()
        return cls(tuple(str(f) for f in p.files), cap.value if cap else None, circle.value if circle else None,
                   table.upper_bounds if table else (), table.table if table else (), iou.value if iou else None)

    def variant(self) -> GlueVariant:
        parts = []
        if self.max_voxels is not None:
            parts.append(f"max_voxels {self.max_voxels}")
        if self.circle_nms_m is not None:
            parts.append(f"circle NMS {self.circle_nms_m:g} m")
        if self.thresholds:
            parts.append("score thresholds per class and range")
        if self.iou_nms is not None:
            parts.append(f"BEV IoU NMS > {self.iou_nms:g}")
        params: dict = {"files": list(self.files)}
        if self.max_voxels is not None:
            params["max_voxels"] = self.max_voxels
        if self.circle_nms_m is not None:
            params["nms_dist_sq"] = self.circle_nms_m ** 2
        if self.thresholds:
            params["upper_bounds"] = [b if math.isfinite(b) else None for b in self.upper_bounds]
            params["thresholds"] = [list(r) for r in self.thresholds]
        if self.iou_nms is not None:
            params["iou_nms"] = self.iou_nms
        return GlueVariant(f"node parameters: {', '.join(parts) or 'none set'}", "node parameters", "node", params)


def node_filter(dets: Detections, params: Mapping) -> Detections:
    """The node's score thresholds (class × distance bin; past the last bound the last bin's) and BEV IoU NMS."""
    keep = np.ones(len(dets), bool)
    if "thresholds" in params and len(dets):
        bounds = np.array([np.inf if b is None else b for b in params["upper_bounds"]])
        table = np.asarray(params["thresholds"], dtype=np.float64)
        dist = np.hypot(dets.boxes[:, 0], dets.boxes[:, 1])
        b = np.minimum(np.searchsorted(bounds, dist, side="right"), len(bounds) - 1)
        labels = np.minimum(dets.labels, len(table) - 1)
        keep = dets.scores >= table[labels, b]
    dets = Detections(dets.boxes[keep], dets.scores[keep], dets.labels[keep], dets.class_names)
    if "iou_nms" in params and len(dets):
        from cp_debug.replay.nms import rotated_nms

        k = rotated_nms(dets.boxes, dets.scores, params["iou_nms"], len(dets))
        dets = Detections(dets.boxes[k], dets.scores[k], dets.labels[k], dets.class_names)
    return dets

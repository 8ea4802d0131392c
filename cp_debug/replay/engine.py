"""The replay: the reference on the deployment's own clouds, every glue variant, and how close each comes.

The engines run once per frame and per re-run variant (`ReferenceRunner` keeps each result, keyed by the
points' hash and the variant's settings, so bags of the same clouds share them); decode and box variants work
on the kept head maps and boxes. A deployment's box agrees with a variant's when the two match by class and
centre (`compare_detections`, within `match_distance`) and also lie within the tolerances of engine numerics
(centre, z, size, yaw, score). A variant's agreement is the agreeing boxes over the larger of the two box
counts, so missing and extra boxes both count against it.

The network's part — its stage runners, the staged pipeline, its decode and its box matching — is the recipe's
`replay` plug-in (`recipes/<name>/replay.py`), handed to `ReferenceRunner` by the command line (which replays the
default recipe's: Autoware's CenterPoint node).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.lidar.boxes import Detections
from cp_debug.replay.variants import (GlueVariant, NodeGlue, apply_box_variant, box_variants, cfg_for, decode_variants,
                                      fitted_thresholds, node_filter, reference_variant, rerun_variants,
                                      score_variants)


@dataclass(frozen=True)
class ReplayFrame:
    """One frame: the cloud the deployment saw as its model reads it (the model's columns; a bag's through
    `data.rosbag.node_points`), its boxes, and where it came from."""

    token: str
    points: np.ndarray
    deployed: Detections
    stamp_ns: int | None = None
    pair_dt_ns: int = 0


@dataclass(frozen=True)
class Tolerances:
    """How far a deployment's box may lie from a variant's and still agree (engine numerics, FP16 included)."""

    match_distance: float = 2.0
    centre: float = 0.2
    z: float = 0.1
    size: float = 0.1
    yaw: float = 0.1
    score: float = 0.05


@dataclass(frozen=True)
class Agreement:
    deployed: int
    boxes: int  # the variant's
    matched: int  # same class within match_distance
    agreeing: int  # matched and within every tolerance
    centre_shifts: np.ndarray = field(repr=False, compare=False)  # of the matched pairs

    @property
    def fraction(self) -> float:
        n = max(self.deployed, self.boxes)
        return 1.0 if n == 0 else self.agreeing / n


def _placed(m, tol: Tolerances) -> bool:
    """A matched pair within the tolerances of engine numerics in everything but the score."""
    return m.centre_dist <= tol.centre and abs(m.z_diff) <= tol.z and m.size_diff <= tol.size and m.yaw_diff <= tol.yaw


def agreement(deployed: Detections, variant: Detections, tol: Tolerances, match: Callable) -> Agreement:
    """`deployed` against `variant`, matched by `match` (the replay plug-in's `compare_detections`)."""
    d = match(variant, deployed, max_dist=tol.match_distance)
    ok = [m for m in d.matched if _placed(m, tol) and abs(m.score_diff) <= tol.score]
    return Agreement(len(deployed), len(variant), len(d.matched), len(ok),
                     np.array([m.centre_dist for m in d.matched], np.float64))


def score_pairs(pairs: Sequence[tuple[Detections, Detections]], tol: Tolerances,
                match: Callable) -> tuple[np.ndarray, np.ndarray]:
    """The scores (reference's, deployment's) of the boxes that agree in place, size and yaw, over the frames'
    (reference, deployed) pairs, matched by `match`: what a score-space variant is fitted on."""
    ref, dep = [], []
    for reference, deployed in pairs:
        for m in match(reference, deployed, max_dist=tol.match_distance).matched:
            if _placed(m, tol):
                ref.append(float(reference.scores[m.index_a]))
                dep.append(float(deployed.scores[m.index_b]))
    return np.asarray(ref, np.float64), np.asarray(dep, np.float64)


class ReferenceRunner:
    """The model's stages as torch runners; `run` runs the staged pipeline once per (points, settings)."""

    def __init__(self, model, cfg, part, device: str = "cpu"):
        self.model, self.cfg, self.device = model, cfg, device
        self.part = part  # the recipe's `replay` plug-in: its pipeline, decode and box matching
        self._runners = None
        self._memo: dict[tuple, object] = {}
        self.runs = 0

    def __enter__(self) -> "ReferenceRunner":
        self._runners = self.part.stage_runners(self.model, device=self.device)
        for r in self._runners:
            r.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for r in self._runners or ():
            r.__exit__(None, None, None)
        self._runners = None

    def run(self, points: np.ndarray, *, order_seed: int | None = None, max_voxels: int | None = None,
            features: str = "computed"):
        """The PipelineResult (head maps and boxes) of `points` under a re-run variant's settings."""
        if self._runners is None:
            raise RuntimeError("ReferenceRunner.run outside its `with` block")
        from cp_debug.lidar.points import prepare_points

        pts = prepare_points(np.asarray(points), self.cfg, source="the frame's points")  # the model's columns
        key = (hashlib.blake2b(pts.tobytes(), digest_size=16).hexdigest(), pts.shape, order_seed, max_voxels, features)
        if key not in self._memo:
            if order_seed is not None:
                pts = pts[np.random.default_rng(order_seed).permutation(len(pts))]
            transform = FEATURE_TRANSFORMS[features](self.cfg.in_channels)
            self._memo[key] = self.part.run_scan(self.cfg, pts, self._runners, device=self.device,
                                                 max_voxels=max_voxels, feature_transform=transform)
            self.runs += 1
        return self._memo[key]

    def voxel_count(self, points: np.ndarray) -> int:
        from cp_debug.lidar.points import prepare_points
        from cp_debug.lidar.voxelize import voxelize

        return voxelize(prepare_points(np.asarray(points, np.float32), self.cfg, source="points"), self.cfg).num_voxels


def _zero_decorations(in_channels: int) -> Callable:
    def zero(feats):
        out = feats.clone()
        out[..., in_channels:] = 0
        return out

    return zero


def _legacy_centre(in_channels: int) -> Callable:
    """Columns: raw (in_channels), xyz - pillar mean (3), xyz - pillar centre (3); x, y take the last block's."""
    def legacy(feats):
        out = feats.clone()
        out[..., 0:2] = feats[..., in_channels + 3:in_channels + 5]
        return out

    return legacy


FEATURE_TRANSFORMS = {"computed": lambda c: None, "zero_padded": _zero_decorations, "legacy_centre": _legacy_centre}


@dataclass(frozen=True)
class ReplayOptions:
    seeds: tuple[int, ...] = (0, 1, 2)
    max_voxels: tuple[int, ...] = ()
    tolerances: Tolerances = Tolerances()
    node: NodeGlue | None = None  # --params: the node's own thresholds, NMS and cap, tried first after the reference


@dataclass(frozen=True)
class FrameResult:
    """One frame against every variant: agreements in the order of `variants`."""

    token: str
    stamp_ns: int | None
    pair_dt_ns: int
    agreements: tuple[Agreement, ...]
    reference: Detections = field(repr=False, compare=False)
    deployed: Detections = field(repr=False, compare=False, default=None)
    boxes: tuple[Detections, ...] = field(repr=False, compare=False, default=())  # each variant's
    # Seeded (shuffled) variants only, by variant index: the run against the unshuffled reference, and the runs
    # of one group (same family and cap, other seeds) against each other.
    to_reference: dict[int, Agreement] = field(repr=False, compare=False, default_factory=dict)
    among: dict[str, tuple[Agreement, ...]] = field(repr=False, compare=False, default_factory=dict)
    bev_points: np.ndarray | None = field(repr=False, compare=False, default=None)  # (<=4000, 2) x, y


def all_variants(cfg, frames: Sequence[ReplayFrame], opts: ReplayOptions,
                 scores: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))) -> list[GlueVariant]:
    """Every variant a replay tries, in order; `scores` are the pairs the score-space variants are fitted on."""
    out = [reference_variant(), *([opts.node.variant()] if opts.node is not None else []), *box_variants()]
    fitted = fitted_thresholds([f.deployed for f in frames], cfg.class_names)
    if fitted is not None:
        out.append(fitted)
    return (out + decode_variants(cfg) + score_variants(*scores)
            + rerun_variants(cfg, opts.seeds, opts.max_voxels))


def variant_detections(runner: ReferenceRunner, frame: ReplayFrame, variant: GlueVariant, voxels: int) -> Detections:
    """The boxes the reference's glue with `variant` gives on the frame."""
    cfg = runner.cfg
    p = variant.params
    if variant.kind == "rerun":
        cap = p.get("max_voxels")
        if cap is not None and cap >= voxels:
            cap = None  # the cap is not reached: same as the preset's
        if p.get("order_seed") is None and cap is None and p.get("features", "computed") == "computed":
            return runner.run(frame.points).detections
        return runner.run(frame.points, order_seed=p.get("order_seed"), max_voxels=cap,
                          features=p.get("features", "computed")).detections
    ref = runner.run(frame.points)
    if variant.kind == "decode":
        dets = runner.part.decode(ref.head, cfg_for(cfg, p), heat_activation=p.get("heat_activation", "sigmoid"))
        if "rotated_iou" in p:
            from cp_debug.replay.nms import rotated_nms

            k = rotated_nms(dets.boxes, dets.scores, p["rotated_iou"], p["keep"])
            dets = Detections(dets.boxes[k], dets.scores[k], dets.labels[k], dets.class_names)
        return dets
    if variant.kind == "box":
        return apply_box_variant(variant, ref.detections)
    if variant.kind == "node":
        cap = p.get("max_voxels")
        run = runner.run(frame.points, max_voxels=cap) if cap is not None and cap < voxels else ref
        return node_filter(runner.part.decode(run.head, cfg_for(cfg, p)), p)
    return ref.detections


def group_of(variant: GlueVariant) -> str:
    """The group of a seeded variant: its name without the seed (one group per family and cap)."""
    return variant.name.rsplit(" (seed", 1)[0]


def replay_frames(runner: ReferenceRunner, frames: Sequence[ReplayFrame], opts: ReplayOptions = ReplayOptions(),
                  on_frame: Callable[[int], None] | None = None) -> tuple[list[GlueVariant], list[FrameResult]]:
    """Every variant's agreement with the deployment on every frame."""
    if not frames:
        raise BadInputError("no frame to replay: the deployment's detections and the clouds share no frame")
    match = runner.part.compare_detections
    scores = score_pairs([(runner.run(f.points).detections, f.deployed) for f in frames], opts.tolerances, match)
    variants = all_variants(runner.cfg, frames, opts, scores)
    results = []
    for i, frame in enumerate(frames):
        voxels = runner.voxel_count(frame.points)
        reference = runner.run(frame.points).detections
        boxes = [variant_detections(runner, frame, v, voxels) for v in variants]
        agreements = tuple(agreement(frame.deployed, b, opts.tolerances, match) for b in boxes)
        seeded = [i for i, v in enumerate(variants) if "order_seed" in v.params]
        to_ref = {i: agreement(reference, boxes[i], opts.tolerances, match) for i in seeded}
        among: dict[str, list[Agreement]] = {}
        for a, i in enumerate(seeded):
            for j in seeded[a + 1:]:
                if group_of(variants[i]) == group_of(variants[j]):
                    among.setdefault(group_of(variants[i]), []).append(agreement(boxes[i], boxes[j], opts.tolerances,
                                                                                      match))
        pts = np.asarray(frame.points)[:, :2]
        results.append(FrameResult(frame.token, frame.stamp_ns, frame.pair_dt_ns, agreements, reference, frame.deployed,
                                   tuple(boxes), to_ref, {k: tuple(v) for k, v in among.items()},
                                   pts[:: max(1, len(pts) // 4000)].astype(np.float32)))
        if on_frame is not None:
            on_frame(i)
    return variants, results

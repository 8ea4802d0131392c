"""CenterPoint's part of `cpdebug replay` (its `replay` plug-in, recipe_contract/recipe.PLUGINS): the reference that
Autoware's CenterPoint node is replayed against — the model's two stages as torch runners, one scan through the
staged pipeline under a re-run variant's settings, the kept head maps decoded under a decode variant's, and two box
sets matched (`replay/engine.py` runs the frames and the variants; it names no network)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from cp_debug.recipes.centerpoint.autoware_node import AUTOWARE_NODE  # noqa: F401 (the hook: the node replayed)

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.boxes import Detections
    from cp_debug.lidar.compare_detections import DetectionDiff
    from cp_debug.recipes.centerpoint.pipeline import PipelineResult


def stage_runners(model, device: str = "cpu") -> list:
    """The model's stages as torch runners (context managers, entered by the caller), in stage order."""
    from cp_debug.recipes.centerpoint.stage_runners import torch_stage_runners

    return list(torch_stage_runners(model, device=device))


def run_scan(cfg, points, runners, *, device: str = "cpu", max_voxels: int | None = None,
             feature_transform: Callable[[Any], Any] | None = None) -> "PipelineResult":
    """One scan (the model's columns) through the staged pipeline on active `runners`: its `head` maps and its
    `detections`. `max_voxels` overrides the preset's voxel cap, `feature_transform` maps the decorated input
    features (torch, (N, P, C)) before the encoder."""
    from cp_debug.recipes.centerpoint.pipeline import run_pipeline

    return run_pipeline(cfg, points, *runners, capture=False, device=device, max_voxels=max_voxels,
                        feature_transform=feature_transform)


def decode(head, cfg, *, heat_activation: str = "sigmoid") -> "Detections":
    """Head maps (a `run_scan` result's `head`) decoded with `cfg`'s thresholds, NMS and cap."""
    from cp_debug.models.centerpoint.decode import decode as decode_heads

    return decode_heads(head, cfg, heat_activation=heat_activation)


def compare_detections(a: "Detections", b: "Detections", max_dist: float) -> "DetectionDiff":
    """`a` (the reference) against `b` matched by class and BEV centre within `max_dist` m: `.matched` pairs with
    their centre, z, size, yaw and score differences."""
    from cp_debug.lidar.compare_detections import compare_detections as compare

    return compare(a, b, max_dist=max_dist)

"""mAP of FP32 and INT8 on held-out scenes, through cp_debug.eval's devkit metrics.

Every lane shares the torch glue (voxelize, decoration, FP32 voxel encoder, scatter) and the decoder; only
the backbone/neck/head stage differs: the BN-fused FP32 model, the fake-quant torch model, or the Q/DQ ONNX
in ONNX Runtime. Detections go through `cp_debug.eval.devkit.evaluate` (nuScenes mAP/NDS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cp_debug.data.frames import HeldOutSet


@dataclass(frozen=True)
class MapFrames:
    """Held-out frames (with their ground truth) and their FP32 stage inputs (spatial_features, in frame order)."""

    frames: HeldOutSet
    spatial: tuple  # torch tensors

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.frames.tokens


def map_scenes(cfg, fp32_model, n: int) -> MapFrames:
    """The first n held-out frames (eval's) and their FP32 stage inputs."""
    from cp_debug.recipes.centerpoint.ptq.scenes import stage_inputs

    frames = HeldOutSet.load(cfg, n)
    return MapFrames(frames, tuple(stage_inputs(fp32_model, cfg, f.load(cfg).points)[1] for f in frames.frames))


def mean_ap(cfg, scenes: MapFrames, heads: Sequence[dict[str, np.ndarray]]):
    """DetectionEvaluation of the decoded `heads` (one dict of head maps per frame, in frame order)."""
    from cp_debug.eval.boxes import SampleBoxes, ground_truth
    from cp_debug.eval.devkit import default_range, evaluate
    from cp_debug.models.centerpoint.decode import decode

    dets = {t: SampleBoxes.from_detections(decode(h, cfg)) for t, h in zip(scenes.tokens, heads)}
    return evaluate(ground_truth(scenes.frames.frames, cfg), dets, cfg.class_names,
                    class_range=default_range(cfg.point_cloud_range))


def torch_heads(model, scenes: MapFrames) -> list[dict[str, np.ndarray]]:
    from cp_debug.recipes.centerpoint.ptq.scenes import head_outputs

    return [head_outputs(model, s) for s in scenes.spatial]


@dataclass(frozen=True)
class LaneMap:
    """One lane's nuScenes figures on the mAP scenes, and its mAP drop against FP32."""

    lane: str  # fp32, torch-fakequant or ort-qdq
    mean_ap: float  # nuScenes mAP (center distance)
    nds: float  # nuScenes detection score
    drop: float  # FP32 mAP minus this lane's


@dataclass(frozen=True)
class MapTable:
    """mAP / NDS per lane (fp32 first) on `scenes` held-out scenes."""

    scenes: int  # held-out scenes with ground truth
    lanes: tuple[LaneMap, ...]

    def get(self, lane: str) -> LaneMap:
        return next(m for m in self.lanes if m.lane == lane)

    def to_json(self) -> dict:
        """{lane: {"mAP", "NDS", "drop"}, …, "scenes": n}, as `quantization.json` keeps it."""
        return {**{m.lane: {"mAP": m.mean_ap, "NDS": m.nds, "drop": m.drop} for m in self.lanes},
                "scenes": self.scenes}


def map_table(cfg, fp32_model, qmodel, scenes: MapFrames, backbone_onnx: str | Path | None = None) -> MapTable:
    """mAP, NDS and drop vs FP32 for fp32, torch-fakequant and (given the Q/DQ file) ort-qdq."""
    from cp_debug.recipes.centerpoint.ptq.int8_error import ort_outputs

    lanes: dict[str, Callable[[], list]] = {
        "fp32": lambda: torch_heads(fp32_model, scenes),
        "torch-fakequant": lambda: torch_heads(qmodel, scenes),
    }
    if backbone_onnx is not None:
        lanes["ort-qdq"] = lambda: ort_outputs(backbone_onnx, scenes.spatial)
    evals = {lane: mean_ap(cfg, scenes, heads()) for lane, heads in lanes.items()}
    fp32 = evals["fp32"].mean_ap
    return MapTable(len(scenes.tokens),
                    tuple(LaneMap(lane, ev.mean_ap, ev.nds, fp32 - ev.mean_ap) for lane, ev in evals.items()))

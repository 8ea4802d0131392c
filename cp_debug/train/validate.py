"""Held-out validation during training: nuScenes center-distance mAP through nuscenes-devkit's own algorithms.

The model runs on held-out scenes (never training seeds), its outputs are decoded as every backend's are
(CenterPoint's maps by `decode.py`; a Detector's own `detect`, e.g. TransFusion's predict_by_feat), and
`cp_debug.eval.devkit.evaluate` (the devkit's accumulate / calc_ap / calc_tp on in-memory `EvalBoxes`, thresholds
0.5/1/2/4 m) scores them. No dataset is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.data.frames import Frame
    from cp_debug.eval.devkit import DetectionEvaluation
    from cp_debug.models.centerpoint.config import CenterPointConfig
    from cp_debug.lidar.boxes import Detections


def detect(model, cfg: "CenterPointConfig", points: np.ndarray, device="cpu") -> "Detections":
    """One scan (M, 5) -> decoded detections with the model's torch forward (eval mode)."""
    import torch

    from cp_debug.models.centerpoint.decode import decode
    from cp_debug.models.centerpoint.pillar_encoder import get_input_features
    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.voxelize import voxelize

    pts = prepare_points(points, cfg, source="validation scene", file_layout=True)
    with torch.no_grad():
        vox = voxelize(pts, cfg, device=device)
        feats = get_input_features(vox.voxels, vox.num_points, vox.coors, cfg)
        maps = model(feats, vox.coors, 1)
    return decode(maps, cfg)


def validate(model, cfg, frames: Sequence["Frame"], device="cpu",
             detect_scan: Callable[..., "Detections"] = detect) -> "DetectionEvaluation":
    """Held-out mAP of `model` on `frames`, e.g. `cp_debug.data.frames.held_out(n)` (loaded once with
    `in_memory(cfg)` when validated more than once); `detect_scan(model, cfg, points, device)` decodes one scan
    (CenterPoint's `detect` by default)."""
    scans = [(f.token, f.load(cfg)) for f in frames]
    was_training = model.training
    model.eval()
    try:
        det = {token: detect_scan(model, cfg, scan.points, device) for token, scan in scans}
    finally:
        model.train(was_training)
    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.devkit import default_range, evaluate

    gt = {token: SampleBoxes.from_truth(scan.truth) for token, scan in scans}
    return evaluate(gt, {t: SampleBoxes.from_detections(d) for t, d in det.items()}, tuple(cfg.class_names),
                    class_range=default_range(cfg.point_cloud_range))

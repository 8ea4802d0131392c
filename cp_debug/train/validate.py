"""Held-out validation during training: nuScenes center-distance mAP through nuscenes-devkit's own algorithms.

The model runs on held-out scenes (never training seeds), its outputs are decoded as every backend's are
(a Detector's own `detect`: CenterPoint's maps by its `decode.py`, TransFusion's predict_by_feat), and
`cp_debug.eval.devkit.evaluate` (the devkit's accumulate / calc_ap / calc_tp on in-memory `EvalBoxes`, thresholds
0.5/1/2/4 m) scores them. No dataset is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.data.frames import Frame
    from cp_debug.eval.devkit import DetectionEvaluation
    from cp_debug.lidar.boxes import Detections


def validate(model, cfg, frames: Sequence["Frame"], device: str,
             detect_scan: Callable[..., "Detections"]) -> "DetectionEvaluation":
    """Held-out mAP of `model` on `frames`, e.g. `cp_debug.data.frames.held_out(n)` (loaded once with
    `in_memory(cfg)` when validated more than once); `detect_scan(model, cfg, points, device)` decodes one scan
    (the run's `Detector.detect`)."""
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

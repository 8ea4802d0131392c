"""TransFusion-L inference as `cpdebug infer --recipe transfusion` runs it: the scan cut to the config's columns
and voxelized by its voxel layer (cp_debug's voxelizer, as bisect and export feed the model), the model's forward
(the head's outputs by AWML's names) and AWML's predict_by_feat (`bbox_coder.predict`: boxes, scores, labels).
Imports torch: import this module lazily.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from cp_debug.errors import BadInputError
from cp_debug.lidar.boxes import Detections

# what `cpdebug infer` writes of the head, by AWML's names (vel only where the config has the head)
HEAD_ARRAYS = ("dense_heatmap", "heatmap", "query_heatmap_score", "center", "height", "dim", "rot", "vel",
               "query_labels")


@dataclass(frozen=True)
class TransFusionRun:
    """One scan through the model: the head's outputs (numpy, batch 1), the decoded boxes, the voxels fed and each
    step's seconds."""

    head: dict[str, np.ndarray]
    detections: Detections
    num_voxels: int
    timings: dict[str, float]


def run_transfusion(model, cfg, points: np.ndarray, device: str = "cpu") -> TransFusionRun:
    """`points` ((M, 5) file layout or the model's columns) -> the head's outputs and AWML's decoded boxes. A scan
    with no point inside the config's range is refused (`BadInputError`)."""
    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.voxelize import voxelize
    from cp_debug.models.transfusion.bbox_coder import predict

    timings = {}
    start = time.perf_counter()
    vox = voxelize(prepare_points(np.asarray(points), cfg, source="points"), cfg, device=device)
    if vox.num_voxels == 0:
        raise BadInputError(f"no point lies inside {cfg.name!r}'s point_cloud_range {list(cfg.point_cloud_range)}; "
                            "check the point file's units and frame")
    timings["voxelize"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        out = model.to(device).eval()(vox.voxels.float(), vox.num_points.to(torch.int32), vox.coors.to(torch.int32))
    timings["forward"] = time.perf_counter() - start
    start = time.perf_counter()
    (detections,) = predict(out, cfg)
    timings["decode"] = time.perf_counter() - start
    head = {name: out[name].detach().cpu().numpy() for name in HEAD_ARRAYS if name in out}
    return TransFusionRun(head, detections, vox.num_voxels, timings)

"""Autoware's TransFusion interface (autoware_lidar_transfusion's `transfusion.onnx`, as AWML's mmdeploy patch
writes it): the deployed file's inputs and outputs, and the outputs computed from the head's outputs by AWML's
names. One home for both the export's module (stages.py) and the node's detections (detections.py)."""

from __future__ import annotations

import numpy as np

DEPLOY_INPUTS = ("voxels", "num_points", "coors")
DEPLOY_OUTPUTS = ("cls_score0", "bbox_pred0", "dir_cls_pred0")
DYNAMIC_AXES = {name: {0: "voxels_num"} for name in DEPLOY_INPUTS}
BBOX_HEADS = ("center", "height", "dim", "vel")  # bbox_pred0's channels, in the patch's order


def deploy_outputs(out: dict, k: int):
    """(cls_score0, bbox_pred0, dir_cls_pred0) of the head's outputs by AWML's names (torch or numpy): the last
    decoder layer's `k` proposals."""
    if isinstance(out["center"], np.ndarray):
        sigmoid, cat = (lambda x: 1.0 / (1.0 + np.exp(-x))), (lambda xs: np.concatenate(xs, axis=1))
    else:
        import torch

        sigmoid, cat = torch.sigmoid, (lambda xs: torch.cat(xs, dim=1))
    last = {name: value[..., -k:] for name, value in out.items() if name not in ("dense_heatmap", "query_labels")}
    cls_score = last["query_heatmap_score"] * sigmoid(last["heatmap"])
    return cls_score, cat([last[h] for h in BBOX_HEADS if h in last]), last["rot"]

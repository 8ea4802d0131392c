"""Autoware's TransFusion interface (autoware_lidar_transfusion's `transfusion.onnx`, as AWML's mmdeploy patch
writes it): the deployed file's inputs and outputs, and the outputs computed from the head's outputs by AWML's
names. One home for both the export's module (stages.py) and the node's detections (detections.py)."""

from __future__ import annotations

import numpy as np

DEPLOY_INPUTS = ("voxels", "num_points", "coors")
DEPLOY_OUTPUTS = ("cls_score0", "bbox_pred0", "dir_cls_pred0")
DYNAMIC_AXES = {name: {0: "voxels_num"} for name in DEPLOY_INPUTS}
BBOX_HEADS = ("center", "height", "dim", "vel")  # bbox_pred0's channels, in the patch's order


def _ops(x):
    """(sigmoid, cat along axis 1) for numpy arrays or torch tensors."""
    if isinstance(x, np.ndarray):
        return (lambda v: 1.0 / (1.0 + np.exp(-v))), (lambda vs: np.concatenate(vs, axis=1))
    import torch

    return torch.sigmoid, (lambda vs: torch.cat(vs, dim=1))


def cls_score(query_heatmap_score, heatmap, k: int):
    """cls_score0: the K proposals' heatmap scores (K of them) times the sigmoid of the last decoder layer's class
    logits (the mmdeploy patch's `query_heatmap_score * heatmap.sigmoid()`)."""
    sigmoid, _ = _ops(heatmap)
    return query_heatmap_score * sigmoid(heatmap[..., -k:])


def deployed(score, heads: dict, k: int):
    """(cls_score0, bbox_pred0, dir_cls_pred0) from cls_score0 and the per-query heads by AWML's names: bbox_pred0
    the cat of the last layer's `k` proposals of center, height, dim, vel (the patch's order), dir_cls_pred0 rot's."""
    _, cat = _ops(heads["center"])
    return score, cat([heads[h][..., -k:] for h in BBOX_HEADS if h in heads]), heads["rot"][..., -k:]


def deploy_outputs(out: dict, k: int):
    """(cls_score0, bbox_pred0, dir_cls_pred0) of the head's outputs by AWML's names (torch or numpy): the last
    decoder layer's `k` proposals."""
    return deployed(cls_score(out["query_heatmap_score"][..., -k:], out["heatmap"], k), out, k)


def interface_mismatch(model) -> str | None:
    """None where the ONNX `model` takes and gives Autoware's interface (names, in order), else what it has
    instead: "has A, B -> C; the node binds voxels, … -> cls_score0, …"."""
    inits = {t.name for t in model.graph.initializer}
    ins = tuple(i.name for i in model.graph.input if i.name not in inits)
    outs = tuple(o.name for o in model.graph.output)
    if (ins, outs) == (DEPLOY_INPUTS, DEPLOY_OUTPUTS):
        return None
    return (f"has {', '.join(ins)} -> {', '.join(outs)}; the node binds {', '.join(DEPLOY_INPUTS)} -> "
            f"{', '.join(DEPLOY_OUTPUTS)}")

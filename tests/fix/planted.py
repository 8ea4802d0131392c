"""A tiny CenterPoint whose first neck deblock holds weights beyond FP16's range (planted FP16 fault)."""

from __future__ import annotations

PLANTED_NODE = "pts_backbone_neck_head.onnx:/pts_neck/deblocks.0/deblocks.0.0/Conv"


def planted_checkpoint(path, scale: float = 1e6):
    """Write a tiny random-weights checkpoint with pts_neck.deblocks.0.0's weights × `scale` (beyond 65504)."""
    import torch

    from cp_debug.models.centerpoint.checkpoint import save_checkpoint
    from cp_debug.recipes.centerpoint.model_source import load_model

    model = load_model("tiny", None, 0, random_weights=True).model
    with torch.no_grad():
        model.pts_neck.deblocks[0][0].weight.mul_(scale)
    return save_checkpoint(model, path)

"""A tiny CenterPoint whose first neck deblock holds weights beyond FP16's range (planted FP16 fault)."""

from __future__ import annotations

PLANTED_NODE = "pts_backbone_neck_head.onnx:/pts_neck/deblocks.0/deblocks.0.0/Conv"


def planted_checkpoint(path, scale: float = 1e6, preset: str = "tiny"):
    """Write a random-weights checkpoint of `preset` with pts_neck.deblocks.0.0's weights × `scale` (beyond 65504)."""
    import torch

    from cp_debug.models.centerpoint.checkpoint import save_checkpoint
    from cp_debug.recipes.centerpoint.model_source import load_model

    model = load_model(preset, None, 0, random_weights=True).model
    with torch.no_grad():
        model.pts_neck.deblocks[0][0].weight.mul_(scale)
    return save_checkpoint(model, path)


INT8_HOSTILE_LAYER = "pts_backbone.blocks.1.0"


def int8_hostile_checkpoint(path):
    """A tiny random-weights checkpoint where pts_backbone.blocks.1.0 holds, per output channel, one weight 100×
    the others on an input channel that is dead (blocks.0's last ReLU outputs 0 there): nothing in FP32, but its
    per-channel INT8 weight scales are set by those outliers and every other weight rounds to zero."""
    import torch

    from cp_debug.models.centerpoint.checkpoint import save_checkpoint
    from cp_debug.recipes.centerpoint.model_source import load_model

    model = load_model("tiny", None, 0, random_weights=True).model
    block0, conv = model.pts_backbone.blocks[0], model.pts_backbone.blocks[1][0]
    with torch.no_grad():
        block0[9].weight[0].zero_()
        block0[10].bias[0] = -5.0
        block0[10].running_mean[0] = 0.0
        conv.weight[:, 0, 1, 1] = 100.0 * conv.weight.abs().max()
    return save_checkpoint(model, path)

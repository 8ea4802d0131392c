"""A tiny CenterPoint whose first neck deblock holds weights beyond FP16's range (planted FP16 fault)."""

from __future__ import annotations

PLANTED_NODE = "pts_backbone_neck_head.onnx:/pts_neck/deblocks.0/deblocks.0.0/Conv"


def planted_checkpoint(path, scale: float = 1e6, preset: str = "tiny"):
    """Write a random-weights checkpoint of `preset` with pts_neck.deblocks.0.0's weights × `scale` (beyond 65504)."""
    import torch

    from cp_debug.pickles import save_checkpoint
    from cp_debug.models.centerpoint.source import load_model

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

    from cp_debug.pickles import save_checkpoint
    from cp_debug.models.centerpoint.source import load_model

    model = load_model("tiny", None, 0, random_weights=True).model
    block0, conv = model.pts_backbone.blocks[0], model.pts_backbone.blocks[1][0]
    with torch.no_grad():
        block0[9].weight[0].zero_()
        block0[10].bias[0] = -5.0
        block0[10].running_mean[0] = 0.0
        conv.weight[:, 0, 1, 1] = 100.0 * conv.weight.abs().max()
    return save_checkpoint(model, path)


LOCAL_OVERFLOW_NODES = ("pts_backbone_neck_head.onnx:/pts_neck/deblocks.0/deblocks.0.0/Conv",
                        "pts_backbone_neck_head.onnx:/pts_neck/deblocks.0/deblocks.0.2/Relu",
                        "pts_backbone_neck_head.onnx:/pts_neck/Concat",
                        "pts_backbone_neck_head.onnx:/pts_bbox_head/shared_conv/conv/Conv")


def local_overflow_checkpoint(path, preset: str = "tiny", peak: float = 2e5, random_weights: bool = True,
                              scene: int = 0):
    """A checkpoint computing what `preset`'s model computes in FP32, whose neck holds values beyond FP16's range:
    pts_neck.deblocks.0's BatchNorm (weight and bias) × a factor that brings its output's largest value on held-out
    scene `scene` (default the first) to `peak` (every scene's output is scaled by that one factor), so that output,
    its ReLU and the neck's concat are that much larger, and the shared conv's weights on those channels ÷ the
    factor, so everything after it is as before. In FP16 those values overflow; keeping the deblock's conv, its
    ReLU, the concat and the shared conv in FP32 (`LOCAL_OVERFLOW_NODES`) fixes it, and the rest of the network is
    the model's own FP16. `random_weights=False` takes the preset's shipped trained weights (demo). Returns the
    path."""
    import torch

    from cp_debug.data.scenes import HELDOUT_SEED_BASE, make_scene
    from cp_debug.pickles import save_checkpoint
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.models.centerpoint.source import load_model

    model = load_model(preset, None, 0, random_weights=random_weights).model.eval()
    deblock = model.pts_neck.deblocks[0]
    seen = []
    hook = deblock.register_forward_hook(lambda mod, inp, out: seen.append(float(out.abs().max())))
    try:
        from cp_debug.recipes.centerpoint.ptq.scenes import head_outputs, stage_inputs

        cfg = get_preset(preset)
        head_outputs(model, stage_inputs(model, cfg, make_scene(cfg, HELDOUT_SEED_BASE + scene).points)[1])
    finally:
        hook.remove()
    factor = peak / seen[0]
    bn = deblock[1]
    with torch.no_grad():
        bn.weight.mul_(factor)
        bn.bias.mul_(factor)
        model.pts_bbox_head.shared_conv.conv.weight[:, :bn.weight.shape[0]].div_(factor)
    return save_checkpoint(model, path)

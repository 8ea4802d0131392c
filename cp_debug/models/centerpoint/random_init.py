"""Random weights that behave like a trained detector's, for running the tool without a checkpoint.

mmdet3d's initialisation alone gives head outputs of scale 10 and more (heights of 80 m, dims of e^25): every
box falls outside post_center_range and nothing is detected. Here the BN statistics are set from one
synthetic scan (so every layer sees unit-scale activations, as in a trained network), and each head's last
conv gets a prior: small offsets around 0.5, centre heights around 1 m, log sizes around a car's, a heatmap
whose logits spread by about 1 around -4.595 (a few hundred cells above the 0.1 score threshold).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cp_debug.models.centerpoint.pillar_encoder import get_input_features
from cp_debug.lidar.synthetic import CLASS_SIZES, synthetic_scene
from cp_debug.lidar.voxelize import voxelize

# head -> (bias per channel or None to keep, std of the head's output)
def head_priors(heatmap_bias: float) -> dict[str, tuple[tuple[float, ...] | None, float]]:
    (l, w, h), _ = CLASS_SIZES["car"]
    return {
        "heatmap": (None, 1.0),
        "reg": ((0.5, 0.5), 0.15),
        "height": ((1.0,), 0.3),
        "dim": ((math.log(l), math.log(w), math.log(h)), 0.25),
        "rot": ((0.0, 0.0), 1.0),
        "vel": ((0.0, 0.0), 0.5),
    }


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def calibrate_batchnorm(model, points=None, *, seed: int = 0, crop: int = 320) -> None:
    """Set every BN's running mean/var to its batch statistics on one scan (a synthetic one by default).

    The backbone, neck and head see the central `crop` x `crop` cells of the BEV canvas: BN statistics are
    per channel, so a crop gives the same kind of numbers as the full 1020 x 1020 grid at a fraction of the cost.
    """
    from cp_debug.lidar.points import prepare_points

    cfg = model.cfg
    if points is None:
        points = synthetic_scene(seed, cfg).points
    pts = prepare_points(points, cfg, source="calibration points")
    vox = voxelize(pts, cfg)
    feats = get_input_features(vox.voxels, vox.num_points, vox.coors, cfg)

    bns = _batchnorms(model)
    saved = [(bn, bn.momentum) for bn in bns]
    was_training = model.training
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: after one batch, exactly the batch statistics
        model.train()
        pillars = model.pts_voxel_encoder(feats).squeeze(1)
        canvas = model.pts_middle_encoder(pillars, vox.coors, 1)
        _, _, ny, nx = canvas.shape
        cy, cx = min(crop, ny), min(crop, nx)
        y0, x0 = (ny - cy) // 2, (nx - cx) // 2
        stride = max(4 * cfg.out_size_factor, cfg.total_stride)  # the crop: a multiple of the total stride
        cy, cx = cy - cy % stride, cx - cx % stride
        canvas = canvas[:, :, y0 : y0 + cy, x0 : x0 + cx].contiguous()
        model.pts_bbox_head(model.pts_neck(model.pts_backbone(canvas)))
    finally:
        for bn, momentum in saved:
            bn.momentum = momentum
        model.train(was_training)


@torch.no_grad()
def set_head_priors(model, generator: torch.Generator | None = None) -> None:
    """Re-draw each head's last conv so its output has the prior's spread around the prior's bias.

    The conv's input is a BN + ReLU output of about unit scale: E[x^2] ~ 1/2 per channel.
    """
    head = model.pts_bbox_head.task_heads[0]
    for name, (bias, std) in head_priors(model.cfg.heatmap_init_bias).items():
        conv = getattr(head, name)[-1]
        fan_in = conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3]
        conv.weight.normal_(0.0, std / math.sqrt(0.5 * fan_in), generator=generator)
        if bias is not None:
            conv.bias.copy_(torch.tensor(bias, dtype=conv.bias.dtype))


def realistic_init(model, seed: int | None = None) -> None:
    """Head priors, then BN statistics from the synthetic scan of `seed` (0 when None)."""
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    set_head_priors(model, gen)
    calibrate_batchnorm(model, seed=0 if seed is None else int(seed))

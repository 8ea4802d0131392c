"""CenterPoint's part of `cpdebug train` (its `train` plug-in, recipes/contract.PLUGINS: its `Detector`): the model
built for training and for re-loading, and a batch's forward and CenterHead losses. The loop (train/loop.py) knows no
network."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.train.losses import LossConfig, centerpoint_losses
from cp_debug.train.targets import TargetConfig

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.models.centerpoint.config import CenterPointConfig
    from cp_debug.train.detectors import Detector

TRAIN_HEATMAP_BIAS = -2.19  # AWML/mmdet3d CenterHead init_bias in training configs


def training_model(cfg: "CenterPointConfig", seed: int = 0):
    """mmdet3d's initialisation, heatmap bias -2.19, in train mode."""
    import torch

    from cp_debug.models.centerpoint.model import build_model

    model = build_model(cfg, seed=seed, init="mmdet3d")
    with torch.no_grad():
        model.pts_bbox_head.task_heads[0].heatmap[-1].bias.fill_(TRAIN_HEATMAP_BIAS)
    return model.train()


def eval_model(cfg: "CenterPointConfig"):
    """A fresh CenterPoint for a saved checkpoint to be re-loaded into."""
    from cp_debug.models.centerpoint.model import build_model

    return build_model(cfg, seed=0, init="mmdet3d")


def forward_batch(model, batch: dict, cfg: "CenterPointConfig", device):
    from cp_debug.models.centerpoint.pillar_encoder import get_input_features

    voxels = batch["voxels"].to(device, non_blocking=True)
    num_points = batch["num_points"].to(device, non_blocking=True)
    coors = batch["coors"].to(device, non_blocking=True)
    feats = get_input_features(voxels, num_points, coors, cfg)
    return model(feats, coors, batch["batch_size"])


def batch_losses(model, batch: dict, cfg: "CenterPointConfig", device, amp: bool) -> dict:
    """CenterPoint's forward on a collated batch (under fp16 autocast when `amp`), then CenterHead's losses."""
    import torch

    with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=amp):
        maps = forward_batch(model, batch, cfg, device)
    targets = [batch[k].to(device, non_blocking=True) for k in ("heatmap", "anno_box", "ind", "mask")]
    code_weights = torch.tensor(TargetConfig().code_weights, dtype=torch.float32, device=device)
    return centerpoint_losses(maps, *targets, code_weights, LossConfig())


def detector() -> "Detector":
    """CenterPoint as `cpdebug train` trains it (scans detected by `train/validate.detect`, CenterPoint's maps)."""
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.train import validate
    from cp_debug.train.detectors import Detector

    return Detector("centerpoint", get_preset, training_model, eval_model, batch_losses, validate.detect)


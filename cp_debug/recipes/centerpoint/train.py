"""CenterPoint's part of `cpdebug train` (its `train` plug-in, recipe_contract/recipe.PLUGINS: its `Detector`): the
model built for training and for re-loading, a batch's forward and CenterHead's losses as mmdet3d computes them
(`CenterHead.loss_by_feat`, one task), and a scan detected through its maps. The loop (train/loop.py) knows no
network.

Heatmap: GaussianFocalLoss (`train.losses.heatmap_loss`). Boxes: L1 (weight 0.25) on the head outputs gathered at the
GT centre cells, weighted by mask x code_weights, divided by the number of GT boxes + 1e-4. Computed in float32 even
under autocast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cp_debug.train.losses import LossConfig, heatmap_loss
from cp_debug.train.targets import TargetConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cp_debug.lidar.boxes import Detections
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


def centerpoint_losses(maps: dict[str, "torch.Tensor"], heatmap: "torch.Tensor", anno_box: "torch.Tensor",
                       ind: "torch.Tensor", mask: "torch.Tensor", code_weights: "torch.Tensor",
                       cfg: LossConfig = LossConfig()) -> dict[str, "torch.Tensor"]:
    """{"loss_heatmap", "loss_bbox"} for a batch: maps (B, C, H, W) by head name; targets stacked over B."""
    import torch

    from cp_debug.models.centerpoint.config import COMMON_HEADS

    loss_heatmap = heatmap_loss(maps["heatmap"], heatmap, cfg)

    pred = torch.cat([maps[name].float() for name, _ in COMMON_HEADS], dim=1)  # (B, 10, H, W)
    b, c = pred.shape[:2]
    pred = pred.permute(0, 2, 3, 1).reshape(b, -1, c)
    pred = pred.gather(1, ind.unsqueeze(2).expand(-1, -1, c))  # (B, max_objs, 10)
    num = mask.float().sum()
    weights = mask.unsqueeze(2).float() * ~torch.isnan(anno_box) * code_weights
    target = torch.nan_to_num(anno_box)
    loss_bbox = (torch.abs(pred - target) * weights).sum() / (num + 1e-4) * cfg.bbox_weight
    return {"loss_heatmap": loss_heatmap, "loss_bbox": loss_bbox}


def batch_losses(model, batch: dict, cfg: "CenterPointConfig", device, amp: bool) -> dict:
    """CenterPoint's forward on a collated batch (under fp16 autocast when `amp`), then CenterHead's losses."""
    import torch

    with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=amp):
        maps = forward_batch(model, batch, cfg, device)
    targets = [batch[k].to(device, non_blocking=True) for k in ("heatmap", "anno_box", "ind", "mask")]
    code_weights = torch.tensor(TargetConfig().code_weights, dtype=torch.float32, device=device)
    return centerpoint_losses(maps, *targets, code_weights, LossConfig())


def detect(model, cfg: "CenterPointConfig", points: np.ndarray, device="cpu") -> "Detections":
    """One scan (M, 5) -> decoded detections with the model's torch forward (eval mode): its maps decoded as every
    backend's are (`models/centerpoint/decode.py`)."""
    import torch

    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.voxelize import voxelize
    from cp_debug.models.centerpoint.decode import decode
    from cp_debug.models.centerpoint.pillar_encoder import get_input_features

    pts = prepare_points(points, cfg, source="validation scene", file_layout=True)
    with torch.no_grad():
        vox = voxelize(pts, cfg, device=device)
        feats = get_input_features(vox.voxels, vox.num_points, vox.coors, cfg)
        maps = model(feats, vox.coors, 1)
    return decode(maps, cfg)


def detector() -> "Detector":
    """CenterPoint as `cpdebug train` trains it (scans detected by `detect`, CenterPoint's maps)."""
    from cp_debug.models.centerpoint.checkpoint import load_checkpoint
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.train.detectors import Detector

    return Detector("centerpoint", get_preset, training_model, eval_model, batch_losses, detect, load_checkpoint)

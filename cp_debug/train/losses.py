"""The focal losses the recipes' heads share, as mmdet computes them: CenterHead's (`recipes/centerpoint/train.py`,
its `CenterHead.loss_by_feat`) and TransFusionHead's (`recipes/transfusion/train.py`).

Heatmap (CenterHead's and TransFusionHead's dense heatmap alike): GaussianFocalLoss (alpha 2, gamma 4) on
clamp(sigmoid(logits), 1e-4, 1 - 1e-4), summed and divided by the number of cells equal to 1; `LossConfig` holds the
heatmap's and the boxes' weights. Computed in float32 even under autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class LossConfig:
    heatmap_weight: float = 1.0
    bbox_weight: float = 0.25
    alpha: float = 2.0
    gamma: float = 4.0


def gaussian_focal_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, gamma: float = 4.0,
                        eps: float = 1e-12) -> torch.Tensor:
    """mmdet's gaussian_focal_loss, element-wise (pred are probabilities)."""
    pos_weights = target.eq(1).float()
    neg_weights = (1 - target).pow(gamma)
    pos = -(pred + eps).log() * (1 - pred).pow(alpha) * pos_weights
    neg = -(1 - pred + eps).log() * pred.pow(alpha) * neg_weights
    return pos + neg


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """mmdet's FocalLoss with use_sigmoid (py_sigmoid_focal_loss), element-wise: target one-hot in {0, 1}."""
    p = logits.sigmoid()
    pt = (1 - p) * target + p * (1 - target)
    weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight


def heatmap_loss(logits: torch.Tensor, target: torch.Tensor, cfg: LossConfig = LossConfig()) -> torch.Tensor:
    """GaussianFocalLoss of a dense heatmap (B, C, H, W) on clip_sigmoid(logits), summed over the number of target
    cells equal to 1 (at least 1), times `heatmap_weight`."""
    hm = torch.clamp(logits.float().sigmoid(), min=1e-4, max=1 - 1e-4)
    num_pos = target.eq(1).float().sum().clamp(min=1.0)
    return gaussian_focal_loss(hm, target, cfg.alpha, cfg.gamma).sum() / num_pos * cfg.heatmap_weight

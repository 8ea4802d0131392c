"""TransFusion-L's part of `cpdebug train` (its `train` plug-in, recipe_contract/recipe.PLUGINS: its `Detector`): the
training losses as AWML's TransFusionHead computes them (`get_targets` / `loss_by_feat`).

- Dense heatmap: GaussianFocalLoss on clip_sigmoid(dense_heatmap) against CenterPoint-style Gaussian targets
  (`targets.build_targets`: the same radius, min_radius 2, gaussian_overlap 0.1), over the cells equal to 1
  (`losses.heatmap_loss`, CenterHead's).
- Queries: per decoder layer, mmdet3d's HungarianAssigner3D matches proposals to GT boxes with scipy's
  linear_sum_assignment on cost = FocalLossCost (weight 0.15, alpha 0.25, gamma 2) of the query's class logits
  + BBoxBEVL1Cost (weight 0.25: L1 of the decoded centres, normalised by the range). AWML adds IoU3DCost (0.25 x
  -3D IoU of the rotated boxes); it needs mmcv's rotated-IoU op and is left out here (`iou_cost_weight` is not
  offered rather than approximated).
- Class scores: mmdet FocalLoss (sigmoid, alpha 0.25, gamma 2) on every proposal, the matched ones towards their
  GT class and the rest towards background, summed over the number of matched queries (batch-wide, at least 1).
- Boxes: L1 (weight 0.25) between the matched queries' outputs and `TransFusionBBoxCoder.encode` of their GT box,
  weighted by code_weights (1 x 8, velocity 0.2), over the number of matched queries.

AWML's dropout (0.1 in attention and FFN) is not built: cp_debug's TransFusion is the eval-mode network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from cp_debug.train.losses import LossConfig, heatmap_loss, sigmoid_focal_loss

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.boxes import Detections
    from cp_debug.models.transfusion.config import TransFusionConfig
    from cp_debug.train.detectors import Detector


@dataclass(frozen=True)
class TransFusionLossConfig:
    """AWML's T4 TransFusion train_cfg.pts (assigner, code_weights) and the head's loss weights."""

    cls_cost_weight: float = 0.15
    reg_cost_weight: float = 0.25
    alpha: float = 0.25
    gamma: float = 2.0
    cls_weight: float = 1.0
    bbox_weight: float = 0.25
    code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
    heatmap: LossConfig = LossConfig()


def training_model(cfg: "TransFusionConfig", seed: int = 0):
    """AWML's initialisation (`models.transfusion.model.init_weights`), in train mode."""
    from cp_debug.models.transfusion.model import build_model

    return build_model(cfg, seed).train()


def eval_model(cfg: "TransFusionConfig"):
    """A fresh model for a saved checkpoint to be re-loaded into."""
    from cp_debug.models.transfusion.model import build_model

    return build_model(cfg, 0)


def detect(model, cfg: "TransFusionConfig", points: np.ndarray, device="cpu") -> "Detections":
    """One scan -> AWML's decoded boxes, as `cpdebug infer --recipe transfusion` gets them."""
    from cp_debug.recipes.transfusion.infer import run_transfusion

    return run_transfusion(model, cfg, points, device).detections


def focal_cost(logits: torch.Tensor, gt_labels: torch.Tensor, cfg: TransFusionLossConfig) -> torch.Tensor:
    """mmdet's FocalLossCost: logits (P, C), gt_labels (K,) -> (P, K), times cls_cost_weight."""
    p = logits.sigmoid()
    eps = 1e-12
    neg = -(1 - p + eps).log() * (1 - cfg.alpha) * p.pow(cfg.gamma)
    pos = -(p + eps).log() * cfg.alpha * (1 - p).pow(cfg.gamma)
    return (pos[:, gt_labels] - neg[:, gt_labels]) * cfg.cls_cost_weight


def bev_l1_cost(xy: torch.Tensor, gt_xy: torch.Tensor, pc_range, cfg: TransFusionLossConfig) -> torch.Tensor:
    """mmdet3d's BBoxBEVL1Cost: the L1 distance (P, K) of centres normalised to [0, 1] over the range."""
    start = xy.new_tensor(pc_range[0:2])
    size = xy.new_tensor(pc_range[3:5]) - start
    return torch.cdist((xy - start) / size, (gt_xy - start) / size, p=1) * cfg.reg_cost_weight


@torch.no_grad()
def hungarian_assign(logits: torch.Tensor, xy: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
                     pc_range, cfg: TransFusionLossConfig) -> tuple[np.ndarray, np.ndarray]:
    """HungarianAssigner3D for one sample and layer: class logits (P, C), decoded centres (P, 2), GT (K, 9) and
    (K,) -> (query indices, GT indices) of the matched pairs (min(P, K) of them)."""
    from scipy.optimize import linear_sum_assignment

    if len(gt_boxes) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cost = focal_cost(logits.float(), gt_labels, cfg) + bev_l1_cost(xy.float(), gt_boxes[:, :2].float(), pc_range,
                                                                     cfg)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows.astype(np.int64), cols.astype(np.int64)


def query_targets(out: dict[str, torch.Tensor], gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor],
                  cfg: "TransFusionConfig", lcfg: TransFusionLossConfig):
    """AWML's get_targets over the batch and every layer's proposals: labels (B, L*P) (num_classes = background),
    bbox_targets and bbox_weights (B, L*P, code_size), and the number of matched queries."""
    from cp_debug.models.transfusion.bbox_coder import TransFusionBBoxCoder

    coder = TransFusionBBoxCoder.from_config(cfg)
    logits = out["heatmap"].detach()
    b, _, n = logits.shape
    p = cfg.num_proposals
    decoded = coder.decode(logits.float(), *(out[k].detach().float() for k in ("rot", "dim", "center", "height")),
                           out["vel"].detach().float() if "vel" in out else None)
    xy = [d["bboxes"][:, :2] for d in decoded]  # the proposals' BEV centres in metres, per sample
    labels = torch.full((b, n), cfg.num_classes, dtype=torch.long, device=logits.device)
    targets = logits.new_zeros((b, n, coder.code_size), dtype=torch.float32)
    weights = torch.zeros_like(targets)
    num_pos = 0
    for i in range(b):
        boxes, classes = gt_boxes[i].to(logits.device).float(), gt_labels[i].to(logits.device).long()
        for start in range(0, n, p):
            rows, cols = hungarian_assign(logits[i, :, start:start + p].T, xy[i][start:start + p], boxes, classes,
                                          cfg.point_cloud_range, lcfg)
            if len(rows) == 0:
                continue
            rows_t = torch.from_numpy(rows + start).to(logits.device)
            cols_t = torch.from_numpy(cols).to(logits.device)
            labels[i, rows_t] = classes[cols_t]
            targets[i, rows_t] = coder.encode(boxes[cols_t])
            weights[i, rows_t] = 1.0
            num_pos += len(rows)
    return labels, targets, weights, num_pos


def transfusion_losses(out: dict[str, torch.Tensor], heatmap: torch.Tensor, gt_boxes: list[torch.Tensor],
                       gt_labels: list[torch.Tensor], cfg: "TransFusionConfig",
                       lcfg: TransFusionLossConfig = TransFusionLossConfig()) -> dict[str, torch.Tensor]:
    """{"loss_heatmap", "loss_cls", "loss_bbox"} of a batch (layers summed, as AWML's layer losses add up):
    the head's outputs by AWML's names, heatmap targets (B, C, H, W), per-sample GT boxes (K, 9) and labels (K,).
    In float32 even under autocast."""
    labels, targets, weights, num_pos = query_targets(out, gt_boxes, gt_labels, cfg, lcfg)
    avg = float(max(num_pos, 1))
    one_hot = F.one_hot(labels, cfg.num_classes + 1)[..., : cfg.num_classes].float()  # background: all zero
    logits = out["heatmap"].float().permute(0, 2, 1)  # (B, L*P, C)
    loss_cls = sigmoid_focal_loss(logits, one_hot, lcfg.alpha, lcfg.gamma).sum() / avg * lcfg.cls_weight
    preds = torch.cat([out[name].float() for name, _ in cfg.common_heads], dim=1).permute(0, 2, 1)
    code_weights = preds.new_tensor(lcfg.code_weights[: preds.shape[-1]])
    loss_bbox = (torch.abs(preds - targets) * weights * code_weights).sum() / avg * lcfg.bbox_weight
    return {"loss_heatmap": heatmap_loss(out["dense_heatmap"], heatmap, lcfg.heatmap), "loss_cls": loss_cls,
            "loss_bbox": loss_bbox}


def batch_losses(model, batch: dict, cfg: "TransFusionConfig", device, amp: bool) -> dict[str, torch.Tensor]:
    """The model's forward on a collated batch (under fp16 autocast when `amp`), then its losses."""
    voxels = batch["voxels"].to(device, non_blocking=True)
    num_points = batch["num_points"].to(device, non_blocking=True)
    coors = batch["coors"].to(device, non_blocking=True)
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.float16, enabled=amp):
        out = model(voxels, num_points, coors, batch["batch_size"])
    return transfusion_losses(out, batch["heatmap"].to(device, non_blocking=True), batch["gt_boxes"],
                              batch["gt_labels"], cfg)


def detector() -> "Detector":
    """TransFusion-L as `cpdebug train` trains it."""
    from cp_debug.models.centerpoint.checkpoint import load_checkpoint
    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.train.detectors import Detector

    return Detector("transfusion", get_preset, training_model, eval_model, batch_losses, detect, load_checkpoint)


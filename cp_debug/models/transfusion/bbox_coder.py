"""TransFusion decoding (and training's encoding): mmdet3d's TransFusionBBoxCoder.decode / encode
(projects/BEVFusion/bevfusion/utils.py) and AWML's TransFusionHead.predict_by_feat
(projects/TransFusion/transfusion/transfusion_head.py), as the T4 configs run them.

score = sigmoid(heatmap) * query_heatmap_score * one_hot(query_labels) over the last layer's proposals; each
proposal's label and score are the max over classes (so a proposal keeps its query class). Box
[x, y, z_bottom, dx, dy, dz, yaw, vx, vy]: x = center_x * out_size_factor * vx + x_min (same for y), dims = exp,
z_bottom = height - dz / 2, yaw = atan2(rot[0], rot[1]). filter: keep boxes whose (x, y, z_bottom) lie inside
post_center_range and, only where score_threshold is truthy, score > score_threshold (the T4 configs' 0.0 is
falsy, so AWML applies no score threshold). nms_type None in the T4 configs: no NMS. Boxes stay in proposal order,
as AWML returns them (not sorted by score).

Unlike AWML's coder, nothing here writes into the head's outputs (AWML's decode scales `center` and exps `dim` in
place, in the very tensors of the outputs dict).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from cp_debug.errors import BadInputError
from cp_debug.lidar.boxes import Detections

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.models.transfusion.config import TransFusionConfig

NEEDED = ("center", "height", "dim", "rot", "heatmap", "query_heatmap_score", "query_labels")


class TransFusionBBoxCoder:
    """decode() of mmdet3d's TransFusionBBoxCoder; pc_range and voxel_size are (x, y) pairs as the config gives."""

    def __init__(self, pc_range: Sequence[float], out_size_factor: int, voxel_size: Sequence[float],
                 post_center_range: Sequence[float] | None = None, score_threshold: float | None = None,
                 code_size: int = 10):
        self.pc_range = tuple(float(v) for v in pc_range[:2])
        self.out_size_factor = out_size_factor
        self.voxel_size = tuple(float(v) for v in voxel_size[:2])
        self.post_center_range = None if post_center_range is None else tuple(float(v) for v in post_center_range)
        self.score_threshold = score_threshold
        self.code_size = code_size

    @classmethod
    def from_config(cls, cfg: "TransFusionConfig") -> "TransFusionBBoxCoder":
        return cls(cfg.point_cloud_range[:2], cfg.out_size_factor, cfg.voxel_size[:2], cfg.post_center_range,
                   cfg.score_threshold, cfg.code_size)

    def encode(self, boxes: torch.Tensor) -> torch.Tensor:
        """mmdet3d's encode: boxes (K, 9) [x, y, z_bottom, l, w, h, yaw, vx, vy] -> the regression targets (K,
        code_size) [center x, y in head cells, z of the gravity centre, log l, w, h, sin yaw, cos yaw, vx, vy] in
        the order of the prediction heads center, height, dim, rot, vel (the inverse of `decode`)."""
        t = boxes.new_zeros((boxes.shape[0], self.code_size))
        t[:, 0] = (boxes[:, 0] - self.pc_range[0]) / (self.out_size_factor * self.voxel_size[0])
        t[:, 1] = (boxes[:, 1] - self.pc_range[1]) / (self.out_size_factor * self.voxel_size[1])
        t[:, 2] = boxes[:, 2] + boxes[:, 5] * 0.5  # bottom centre to gravity centre
        t[:, 3:6] = boxes[:, 3:6].log()
        t[:, 6] = torch.sin(boxes[:, 6])
        t[:, 7] = torch.cos(boxes[:, 6])
        if self.code_size == 10:
            t[:, 8:10] = boxes[:, 7:9]
        return t

    def decode(self, heatmap: torch.Tensor, rot: torch.Tensor, dim: torch.Tensor, center: torch.Tensor,
               height: torch.Tensor, vel: torch.Tensor | None, filter: bool = False) -> list[dict[str, torch.Tensor]]:
        """Per batch element {bboxes (N, 9 or 7), scores (N,), labels (N,)}; inputs (B, C, P), not modified."""
        scores, labels = heatmap.max(1, keepdim=False)
        center = center.clone()
        center[:, 0, :] = center[:, 0, :] * self.out_size_factor * self.voxel_size[0] + self.pc_range[0]
        center[:, 1, :] = center[:, 1, :] * self.out_size_factor * self.voxel_size[1] + self.pc_range[1]
        dim = dim.exp()
        height = height - dim[:, 2:3, :] * 0.5  # gravity centre to bottom centre
        yaw = torch.atan2(rot[:, 0:1, :], rot[:, 1:2, :])
        parts = [center, height, dim, yaw] + ([] if vel is None else [vel])
        boxes = torch.cat(parts, dim=1).permute(0, 2, 1)
        keep = torch.ones_like(scores, dtype=torch.bool)
        if filter:
            if self.post_center_range is None:  # mmdet3d raises NotImplementedError here too
                raise BadInputError("TransFusionBBoxCoder filters only with a post_center_range (as mmdet3d's)")
            lo = boxes.new_tensor(self.post_center_range[:3])
            hi = boxes.new_tensor(self.post_center_range[3:])
            keep = (boxes[..., :3] >= lo).all(2) & (boxes[..., :3] <= hi).all(2)
            if self.score_threshold:  # truthy, as mmdet3d tests it: 0.0 applies no threshold
                keep &= scores > self.score_threshold
        return [{"bboxes": boxes[i, keep[i]], "scores": scores[i, keep[i]], "labels": labels[i, keep[i]]}
                for i in range(heatmap.shape[0])]


def proposal_scores(outputs: Mapping[str, torch.Tensor], num_proposals: int, num_classes: int) -> torch.Tensor:
    """(B, classes, P): sigmoid(heatmap) * query_heatmap_score * one_hot(query_labels) of the last layer's
    proposals, as predict_by_feat scores them."""
    score = outputs["heatmap"][..., -num_proposals:].sigmoid()
    one_hot = F.one_hot(outputs["query_labels"].long(), num_classes=num_classes).permute(0, 2, 1)
    return score * outputs["query_heatmap_score"] * one_hot


def predict(outputs: Mapping[str, torch.Tensor], cfg: "TransFusionConfig") -> list[Detections]:
    """The head's outputs -> one Detections per batch element (boxes in proposal order; cells: the head cell
    row * W + col of each box's proposal is not kept by AWML and is None here)."""
    missing = [n for n in NEEDED if n not in outputs]
    if missing:
        raise BadInputError(f"TransFusion outputs are missing {', '.join(missing)}; decoding needs "
                            f"{', '.join(NEEDED)}")
    p = cfg.num_proposals
    last = {k: torch.as_tensor(outputs[k])[..., -p:] for k in ("center", "height", "dim", "rot", "vel")
            if k in outputs}
    scores = proposal_scores({k: torch.as_tensor(v) for k, v in outputs.items()}, p, cfg.num_classes)
    coder = TransFusionBBoxCoder.from_config(cfg)
    with torch.no_grad():
        per_frame = coder.decode(scores, last["rot"], last["dim"], last["center"], last["height"], last.get("vel"),
                                 filter=True)
    return [Detections(d["bboxes"].float().cpu().numpy().astype(np.float32),
                       d["scores"].float().cpu().numpy().astype(np.float32),
                       d["labels"].cpu().numpy().astype(np.int64), tuple(cfg.class_names)) for d in per_frame]

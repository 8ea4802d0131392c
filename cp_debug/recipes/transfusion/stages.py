"""TransFusion-L's torch modules as cp_debug runs them: Autoware's one-graph deploy module, and the two bisect stages
cut at the proposal selection. Each holds the model's own children under the model's names (probes are the
model's module names); none changes the model. Imports torch: import this module lazily.
"""

from __future__ import annotations

import torch
from torch import nn

from cp_debug.recipes.transfusion.interface import cls_score, deploy_outputs

# the bisect's stages: the BEV features and the dense heatmap; then the decoder on the chosen proposals
BEV_INPUTS = ("voxels", "num_points", "coors")
BEV_OUTPUTS = ("bev_features", "dense_heatmap")
QUERY_INPUTS = ("bev_features_in", "top_proposals", "query_heatmap_score")
QUERY_OUTPUTS = ("center", "height", "dim", "rot", "vel", "heatmap", "cls_score")


class OneBatchScatter(nn.Module):
    """mmdeploy's PointPillarsScatter rewrite for batch 1 (no mask): (N, C) pillars -> (1, C, ny, nx)."""

    def __init__(self, channels: int, ny: int, nx: int):
        super().__init__()
        self.channels, self.ny, self.nx = channels, ny, nx

    def forward(self, pillars: torch.Tensor, coors: torch.Tensor) -> torch.Tensor:
        canvas = torch.zeros(self.channels, self.ny * self.nx, dtype=pillars.dtype, device=pillars.device)
        indices = coors[:, 2].long() * self.nx + coors[:, 3].long()
        canvas[:, indices] = pillars.t()
        return canvas.view(1, self.channels, self.ny, self.nx)


class _BevTrunk(nn.Module):
    """The model's voxel encoder, backbone, neck and head, and the one-batch scatter, under the model's names."""

    def __init__(self, model):
        super().__init__()
        cfg = model.cfg
        nx, ny = cfg.grid_size
        self.cfg = cfg
        self.pts_voxel_encoder = model.pts_voxel_encoder
        self.pts_middle_encoder = OneBatchScatter(cfg.pillar_channels, ny, nx)
        self.pts_backbone = model.pts_backbone
        self.pts_neck = model.pts_neck
        self.pts_bbox_head = model.pts_bbox_head

    def neck_features(self, voxels, num_points, coors) -> torch.Tensor:
        features = self.pts_voxel_encoder.get_input_features(voxels, num_points, coors)
        pillars = self.pts_voxel_encoder(features).squeeze(1)
        x = self.pts_neck(self.pts_backbone(self.pts_middle_encoder(pillars, coors)))
        return x if isinstance(x, torch.Tensor) else x[0]


class TransFusionDeploy(_BevTrunk):
    """voxels, num_points, coors -> cls_score0, bbox_pred0, dir_cls_pred0 (Autoware's transfusion.onnx)."""

    def forward(self, voxels, num_points, coors):
        out = self.pts_bbox_head(self.neck_features(voxels, num_points, coors))
        return deploy_outputs(out, self.cfg.num_proposals)


class BevStage(_BevTrunk):
    """Bisect stage 0: voxels, num_points, coors -> the head's shared features and its dense heatmap (logits)."""

    def forward(self, voxels, num_points, coors):
        head = self.pts_bbox_head
        lidar_feat = head.shared_conv(self.neck_features(voxels, num_points, coors))
        return lidar_feat, head.heatmap_head(lidar_feat)


class _HeadQueries(nn.Module):
    """The head's query path (`TransFusionHead.decode_proposals`) as a module of its own: called, it opens the
    `pts_bbox_head` scope the exporter names the decoder's nodes by (a method call opens none); its children are
    the head's class_encoding, decoder and prediction_heads themselves."""

    def __init__(self, head):
        super().__init__()
        self.class_encoding, self.decoder, self.prediction_heads = head.class_encoding, head.decoder, \
            head.prediction_heads
        self._head = (head,)  # not a child: its other modules (shared_conv, heatmap_head) are stage 0's

    def forward(self, bev_features, top_proposals):
        return self._head[0].decode_proposals(bev_features, top_proposals)


class QueryStage(nn.Module):
    """Bisect stage 1: the shared features, the chosen proposals (int64 indices into classes x cells) and their
    heatmap scores -> the decoder's per-query outputs (every layer's with auxiliary) and the last layer's cls_score
    (query_heatmap_score x sigmoid(heatmap), as the deployed cls_score0)."""

    def __init__(self, model):
        super().__init__()
        self.pts_bbox_head = _HeadQueries(model.pts_bbox_head)

    def forward(self, bev_features, top_proposals, query_heatmap_score):
        out = self.pts_bbox_head(bev_features, top_proposals)
        k = top_proposals.shape[-1]
        out["cls_score"] = cls_score(query_heatmap_score, out["heatmap"], k)
        return tuple(out[name] for name in QUERY_OUTPUTS)

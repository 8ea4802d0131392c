"""AWML's TransFusionHead (projects/TransFusion/transfusion/transfusion_head.py), its eval-mode forward_single.

Child names follow AWML so the state_dict keys are AWML's: `shared_conv` (a bare Conv2d 3x3 *with* bias: mmcv's
build_conv_layer passes bias="auto" to nn.Conv2d, which takes any truthy value as True), `heatmap_head.0`
(ConvModule: `.conv` without bias, `.bn`) and `heatmap_head.1` (Conv2d 3x3 with bias), `class_encoding` (Conv1d
classes -> hidden, k1), `decoder.{i}` (transformer.TransformerDecoderLayer) and `prediction_heads.{i}` (mmdet3d's
SeparateHead on Conv1d / BN1d: `<head>.0.conv`, `<head>.0.bn`, `<head>.1`, heads center, height, dim, rot, vel,
heatmap). The BEV positions (`bev_pos`) are a plain attribute, not a buffer, as in AWML: no state_dict key.

What forward_single does, in order, and AWML's specifics kept on purpose:
- dense_heatmap = heatmap_head(shared_conv(x)); its sigmoid, kept where it equals the max of its
  nms_kernel_size window (max_pool2d with no padding, written into the inner region of a zero map: every border
  cell of width kernel // 2 is dropped). AWML's copy has nuScenes' / Waymo's class-specific pooling commented out:
  every class is pooled alike.
- The top num_proposals of (classes x cells) by `argsort(descending=True)` (as AWML sorts; not topk); the class
  is index // cells, the cell index % cells.
- query_feat = the shared features at those cells + class_encoding(one-hot class); query_pos = the cells'
  (x + 0.5, y + 0.5) in head-cell units (create_2D_grid: built for (x_size, y_size) = grid // out_size_factor).
- Per decoder layer: the layer, then its prediction head; center += query_pos; the next layer's query_pos is the
  new center.
- query_heatmap_score = the pooled heatmap at the proposals' cells (all classes); with auxiliary, every key but
  dense_heatmap and query_heatmap_score is concatenated over the layers along the proposals.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from cp_debug.models.centerpoint.centerpoint_head import ConvModule, SeparateHead
from cp_debug.models.transfusion.config import COMMON_HEADS
from cp_debug.models.transfusion.transformer import TransformerDecoderLayer


def create_2d_grid(x_size: int, y_size: int) -> torch.Tensor:
    """(1, x_size * y_size, 2): the head cells' centres in cell units, in AWML's create_2D_grid order (channel 0 runs
    along the second meshgrid axis, channel 1 along the first: x, y for the square grids AWML uses)."""
    first, second = torch.meshgrid(torch.linspace(0, x_size - 1, x_size), torch.linspace(0, y_size - 1, y_size),
                                   indexing="ij")
    coords = torch.cat([(second + 0.5)[None], (first + 0.5)[None]], dim=0)[None]
    return coords.view(1, 2, -1).permute(0, 2, 1)


class TransFusionHead(nn.Module):
    def __init__(
        self,
        num_proposals: int = 500,
        in_channels: int = 384,
        hidden_channel: int = 128,
        num_classes: int = 5,
        num_decoder_layers: int = 1,
        *,
        nms_kernel_size: int = 3,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        num_heads: int = 8,
        ffn_channels: int = 256,
        layer_norm_eps: float = 1e-5,
        pos_input_channel: int = 2,
        common_heads: Sequence[tuple[str, int]] = COMMON_HEADS,
        head_conv: int = 64,
        head_size: tuple[int, int] = (192, 192),
        auxiliary: bool = True,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_proposals = num_proposals
        self.num_decoder_layers = num_decoder_layers
        self.nms_kernel_size = nms_kernel_size
        self.auxiliary = auxiliary
        bn = {"eps": bn_eps, "momentum": bn_momentum}
        self.shared_conv = nn.Conv2d(in_channels, hidden_channel, 3, padding=1, bias=True)
        self.heatmap_head = nn.Sequential(
            ConvModule(hidden_channel, hidden_channel, 3, **bn),
            nn.Conv2d(hidden_channel, num_classes, 3, padding=1, bias=True),
        )
        self.class_encoding = nn.Conv1d(num_classes, hidden_channel, 1)
        self.decoder = nn.ModuleList([
            TransformerDecoderLayer(hidden_channel, num_heads, ffn_channels, pos_input_channel=pos_input_channel,
                                    norm_eps=layer_norm_eps, bn_eps=bn_eps, bn_momentum=bn_momentum)
            for _ in range(num_decoder_layers)
        ])
        heads = [*common_heads, ("heatmap", num_classes)]
        self.prediction_heads = nn.ModuleList([
            SeparateHead(hidden_channel, heads, head_conv=head_conv, dims=1, **bn)
            for _ in range(num_decoder_layers)
        ])
        self.bev_pos = create_2d_grid(*head_size)

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Neck output (B, in_channels, H, W) (or a one-element list of it, as mmdet3d passes it) -> the outputs by
        AWML's names (config.HEAD_OUTPUTS); query_labels (B, num_proposals) int64 is what AWML keeps as
        `self.query_labels`."""
        if not isinstance(x, torch.Tensor):
            (x,) = x
        lidar_feat = self.shared_conv(x)
        dense_heatmap = self.heatmap_head(lidar_feat.float())
        heatmap, top_proposals = self.select_proposals(dense_heatmap)
        cells = heatmap.shape[-1]
        out = self.decode_proposals(lidar_feat, top_proposals)
        top_index = top_proposals % cells
        out["query_heatmap_score"] = heatmap.gather(index=top_index[:, None, :].expand(-1, self.num_classes, -1),
                                                    dim=-1)
        out["dense_heatmap"] = dense_heatmap
        out["query_labels"] = top_proposals // cells
        return out

    def select_proposals(self, dense_heatmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The proposal selection: (the local-max heatmap (B, classes, cells), top_proposals (B, num_proposals)
        int64 indices into classes x cells, best first, by AWML's argsort)."""
        batch_size = dense_heatmap.shape[0]
        heatmap = local_maxima(dense_heatmap.detach().sigmoid(), self.nms_kernel_size)
        heatmap = heatmap.view(batch_size, heatmap.shape[1], -1)
        top_proposals = heatmap.view(batch_size, -1).argsort(dim=-1, descending=True)[..., : self.num_proposals]
        return heatmap, top_proposals

    def decode_proposals(self, lidar_feat: torch.Tensor, top_proposals: torch.Tensor) -> dict[str, torch.Tensor]:
        """The queries of the chosen proposals through the decoder layers and prediction heads: shared features
        (B, hidden, H, W), top_proposals (B, num_proposals) int64 indices into (classes x cells) -> the per-query
        outputs (center, height, dim, rot, vel, heatmap; every layer's with auxiliary)."""
        batch_size = lidar_feat.shape[0]
        lidar_feat_flatten = lidar_feat.view(batch_size, lidar_feat.shape[1], -1)
        bev_pos = self.bev_pos.repeat(batch_size, 1, 1).to(lidar_feat.device, lidar_feat.dtype)
        cells = lidar_feat_flatten.shape[-1]
        query_labels = top_proposals // cells
        top_index = top_proposals % cells
        query_feat = lidar_feat_flatten.gather(
            index=top_index[:, None, :].expand(-1, lidar_feat_flatten.shape[1], -1), dim=-1)
        one_hot = F.one_hot(query_labels, num_classes=self.num_classes).permute(0, 2, 1)
        query_feat = query_feat + self.class_encoding(one_hot.to(lidar_feat.dtype))  # AWML: .float()
        query_pos = bev_pos.gather(index=top_index[:, None, :].permute(0, 2, 1).expand(-1, -1, bev_pos.shape[-1]),
                                   dim=1)

        layers = []
        for decoder, prediction_head in zip(self.decoder, self.prediction_heads):
            query_feat = decoder(query_feat, lidar_feat_flatten, query_pos, bev_pos)
            res = prediction_head(query_feat)
            res["center"] = res["center"] + query_pos.permute(0, 2, 1)
            layers.append(res)
            query_pos = res["center"].detach().clone().permute(0, 2, 1)

        if not self.auxiliary:
            layers = layers[-1:]
        return {key: torch.cat([res[key] for res in layers], dim=-1) for key in layers[0]}


def local_maxima(heatmap: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The heatmap where it equals the max of its kernel_size window, zero elsewhere and on the border (width
    kernel_size // 2) that the unpadded window does not reach, as AWML's forward_single computes it."""
    padding = kernel_size // 2
    local_max = torch.zeros_like(heatmap)
    inner = F.max_pool2d(heatmap, kernel_size=kernel_size, stride=1, padding=0)
    local_max[:, :, padding:(-padding), padding:(-padding)] = inner
    return heatmap * (heatmap == local_max)

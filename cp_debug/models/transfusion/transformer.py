"""The decoder layer of TransFusionHead, as mmdet3d 1.4's BEVFusion project builds it, in eval mode.

mmdet3d `projects/BEVFusion/bevfusion/transformer.py` (PositionEncodingLearned, TransformerDecoderLayer) on mmdet
3.x's `DetrTransformerDecoderLayer` (mmdet/models/layers/transformer/detr_layers.py: self_attn, cross_attn, ffn,
norms[0..2], attention batch_first=True) and mmcv 2.x's `MultiheadAttention` / `FFN`
(mmcv/cnn/bricks/transformer.py). Child names follow theirs, so the state_dict keys are theirs:
`self_attn.attn.in_proj_weight` (the torch nn.MultiheadAttention inside mmcv's wrapper), `ffn.layers.0.0` /
`ffn.layers.1` (Linear, ReLU, Dropout in a Sequential, then the second Linear), `norms.{0,1,2}`,
`{self,cross}_posembed.position_embedding_head.{0,1,3}` (Conv1d, BN1d, ReLU, Conv1d).

Two things differ from a textbook DETR layer, both as BEVFusion does them: the value of each attention is the
key *with* its position embedding added, and the query/key positions are embedded by a learned MLP of the BEV
coordinates (in head-cell units) rather than a sine encoding. Dropout is identity in eval mode and left out.
"""

from __future__ import annotations

import torch
from torch import nn


class PositionEncodingLearned(nn.Module):
    """Conv1d(2 -> F) -> BN1d -> ReLU -> Conv1d(F -> F) over positions (B, N, 2) -> (B, F, N)."""

    def __init__(self, input_channel: int = 2, num_pos_feats: int = 128, *, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        self.position_embedding_head = nn.Sequential(
            nn.Conv1d(input_channel, num_pos_feats, kernel_size=1),
            nn.BatchNorm1d(num_pos_feats, eps=eps, momentum=momentum),
            nn.ReLU(inplace=True),
            nn.Conv1d(num_pos_feats, num_pos_feats, kernel_size=1),
        )

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        return self.position_embedding_head(xyz.transpose(1, 2).contiguous())


class MultiheadAttention(nn.Module):
    """mmcv's MultiheadAttention (batch_first=True) in eval mode: positions added to query and key, torch's
    attention on (N, B, C), the output added to the query without its position (identity)."""

    def __init__(self, embed_dims: int, num_heads: int):
        super().__init__()
        self.embed_dims = embed_dims
        self.attn = nn.MultiheadAttention(embed_dims, num_heads)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, query_pos: torch.Tensor,
                key_pos: torch.Tensor) -> torch.Tensor:
        """query (B, Nq, C), key/value (B, Nk, C), positions shaped as query / key -> (B, Nq, C)."""
        identity = query
        query = query + query_pos
        key = key + key_pos
        out = self.attn(query=query.transpose(0, 1), key=key.transpose(0, 1), value=value.transpose(0, 1))[0]
        return identity + out.transpose(0, 1)


class FFN(nn.Module):
    """mmcv's FFN with num_fcs=2 in eval mode: Linear -> ReLU -> Linear, added to its input."""

    def __init__(self, embed_dims: int, feedforward_channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dims, feedforward_channels), nn.ReLU(inplace=True), nn.Dropout(0.0)),
            nn.Linear(feedforward_channels, embed_dims),
            nn.Dropout(0.0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class TransformerDecoderLayer(nn.Module):
    """Self-attention over the proposals, cross-attention over every BEV cell, FFN; a LayerNorm after each.

    forward takes channel-first tensors as TransFusionHead holds them: query (B, C, Nq), key (B, C, Nk),
    query_pos (B, Nq, 2), key_pos (B, Nk, 2); returns the new query (B, C, Nq).
    """

    def __init__(
        self,
        embed_dims: int = 128,
        num_heads: int = 8,
        feedforward_channels: int = 256,
        *,
        pos_input_channel: int = 2,
        norm_eps: float = 1e-5,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        # registration order of DetrTransformerDecoderLayer, then BEVFusion's two position embeddings
        self.self_attn = MultiheadAttention(embed_dims, num_heads)
        self.cross_attn = MultiheadAttention(embed_dims, num_heads)
        self.embed_dims = embed_dims
        self.ffn = FFN(embed_dims, feedforward_channels)
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dims, eps=norm_eps) for _ in range(3)])
        self.self_posembed = PositionEncodingLearned(pos_input_channel, embed_dims, eps=bn_eps, momentum=bn_momentum)
        self.cross_posembed = PositionEncodingLearned(pos_input_channel, embed_dims, eps=bn_eps,
                                                      momentum=bn_momentum)

    def forward(self, query: torch.Tensor, key: torch.Tensor, query_pos: torch.Tensor,
                key_pos: torch.Tensor) -> torch.Tensor:
        query_pos_embed = self.self_posembed(query_pos).transpose(1, 2)
        key_pos_embed = self.cross_posembed(key_pos).transpose(1, 2)
        query = query.transpose(1, 2)
        key = key.transpose(1, 2)
        query = self.self_attn(query, query, query + query_pos_embed, query_pos_embed, query_pos_embed)
        query = self.norms[0](query)
        query = self.cross_attn(query, key, key + key_pos_embed, query_pos_embed, key_pos_embed)
        query = self.norms[1](query)
        query = self.norms[2](self.ffn(query))
        return query.transpose(1, 2)

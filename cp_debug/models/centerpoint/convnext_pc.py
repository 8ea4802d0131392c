"""AWML's ConvNeXt_PC backbone (projects/ConvNeXt_PC, from PillarNeSt) on mmpretrain's ConvNeXt blocks, at inference.

Names follow AWML/mmpretrain so checkpoints load key for key: `downsample_layers.{i}` (i >= first_downsample: a
LayerNorm2d then a 2x2 stride-2 conv), `stages.{i}.{j}` (ConvNeXt blocks: `depthwise_conv` 7x7, `norm`,
`pointwise_conv1`/`pointwise_conv2` as Linear layers over channels, `gamma` layer scale) and `norm{i}` (a
LayerNorm2d on each stage named in out_indices). Stage 0 has the pillar channels and no downsampling, so
stage i runs at stride 2**i. Drop path is the identity at inference and `with_cp` only saves training memory,
so neither exists here. LayerNorm is `F.layer_norm`: one LayerNormalization node at ONNX opset 17.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) map (mmpretrain's LN2d): permute to channels-last,
    normalise the last axis, permute back. `channels_last=True` takes an (N, H, W, C) input as it is."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        if channels_last:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2).contiguous()


class ConvNeXtBlock(nn.Module):
    """x + gamma * pw2(GELU(pw1(LN(dwconv7x7(x))))): mmpretrain's ConvNeXtBlock without GRN and drop path."""

    def __init__(
        self,
        channels: int,
        *,
        mlp_ratio: float = 4.0,
        linear_pw_conv: bool = True,
        layer_scale: float = 1e-6,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.depthwise_conv = nn.Conv2d(channels, channels, kernel_size=7, padding=3, groups=channels)
        self.linear_pw_conv = bool(linear_pw_conv)
        self.norm = LayerNorm2d(channels, eps=eps)
        mid = int(mlp_ratio * channels)
        if self.linear_pw_conv:
            self.pointwise_conv1 = nn.Linear(channels, mid)
            self.act = nn.GELU()
            self.pointwise_conv2 = nn.Linear(mid, channels)
        else:
            self.pointwise_conv1 = nn.Conv2d(channels, mid, kernel_size=1)
            self.act = nn.GELU()
            self.pointwise_conv2 = nn.Conv2d(mid, channels, kernel_size=1)
        self.gamma = nn.Parameter(layer_scale * torch.ones(channels)) if layer_scale > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.depthwise_conv(x)
        if self.linear_pw_conv:
            # the norm takes the (N, C, H, W) map positionally (a probe's local error re-runs a module on its
            # recorded positional inputs: a channels_last keyword would be lost), then the Linear layers act on
            # the channels of (N, H, W, C)
            x = self.norm(x).permute(0, 2, 3, 1)
            x = self.pointwise_conv2(self.act(self.pointwise_conv1(x)))
            x = x.permute(0, 3, 1, 2)
        else:
            x = self.pointwise_conv2(self.act(self.pointwise_conv1(self.norm(x))))
        if self.gamma is not None:
            x = x.mul(self.gamma.view(1, -1, 1, 1))
        return shortcut + x


class ConvNeXt_PC(nn.Module):  # noqa: N801 - AWML's registry name, so configs and checkpoints read the same
    """Stages of ConvNeXt blocks with a LayerNorm2d + 2x2 stride-2 conv between them; returns the normed maps of
    the stages in `out_indices` (AWML's gap_before_final_norm=False)."""

    def __init__(
        self,
        channels: Sequence[int],
        depths: Sequence[int],
        out_indices: Sequence[int],
        *,
        mlp_ratio: float = 4.0,
        linear_pw_conv: bool = True,
        layer_scale: float = 1e-6,
        norm_eps: float = 1e-6,
        downsample_eps: float = 1e-5,
        first_downsample: int = 1,
    ):
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        self.out_indices = tuple(int(i) for i in out_indices)
        self.first_downsample = int(first_downsample)
        # downsample_layers.0 is None (no keys) when the first stage keeps the pillar resolution
        self.downsample_layers = nn.ModuleList([] if self.first_downsample == 0 else [None])
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            if i >= self.first_downsample:
                c_in = self.channels[i - 1] if i > 0 else self.channels[0]
                self.downsample_layers.append(nn.Sequential(
                    LayerNorm2d(c_in, eps=downsample_eps), nn.Conv2d(c_in, self.channels[i], kernel_size=2, stride=2)))
            self.stages.append(nn.Sequential(*[
                ConvNeXtBlock(self.channels[i], mlp_ratio=mlp_ratio, linear_pw_conv=linear_pw_conv,
                              layer_scale=layer_scale, eps=norm_eps)
                for _ in range(depth)]))
            if i in self.out_indices:
                self.add_module(f"norm{i}", LayerNorm2d(self.channels[i], eps=norm_eps))

    def stage_names(self) -> tuple[str, ...]:
        """The children in execution order (the probes of the `stage` level, relative to this module)."""
        names = []
        for i in range(len(self.stages)):
            if i >= self.first_downsample:
                names.append(f"downsample_layers.{i}")
            names.append(f"stages.{i}")
            if i in self.out_indices:
                names.append(f"norm{i}")
        return tuple(names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for i, stage in enumerate(self.stages):
            if i >= self.first_downsample:
                x = self.downsample_layers[i](x)
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f"norm{i}")(x))
        return tuple(outs)

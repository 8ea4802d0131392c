"""mmdet3d's SECONDFPN neck: one deblock per backbone level, concatenated.

A stride s > 1 is a ConvTranspose2d(k=s, s=s); a stride < 1 is a Conv2d(k=1/s, s=1/s); a stride of 1 is a
Conv2d(k=1) with `conv_for_no_stride` (AWML's use_conv_for_no_stride=True) and a ConvTranspose2d(k=1) without it
(mmdet3d's default, and autoware-ml's SECONDFPN). awml-base's [0.5, 1, 2] gives Conv k2 s2, Conv k1, ConvT k2;
awml-760's [1, 2, 4] gives Conv k1, ConvT k2, ConvT k4.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class SECONDFPN(nn.Module):
    def __init__(
        self,
        in_channels: Sequence[int] = (64, 128, 256),
        out_channels: Sequence[int] = (128, 128, 128),
        upsample_strides: Sequence[float] = (0.5, 1, 2),
        *,
        eps: float = 1e-3,
        momentum: float = 0.01,
        conv_for_no_stride: bool = True,
    ):
        super().__init__()
        deblocks = []
        for i, out_channel in enumerate(out_channels):
            stride = upsample_strides[i]
            if stride > 1 or (stride == 1 and not conv_for_no_stride):
                up = nn.ConvTranspose2d(in_channels[i], out_channel, int(stride), stride=int(stride), bias=False)
            else:
                k = int(round(1 / stride))
                up = nn.Conv2d(in_channels[i], out_channel, k, stride=k, bias=False)
            deblocks.append(nn.Sequential(up, nn.BatchNorm2d(out_channel, eps=eps, momentum=momentum),
                                          nn.ReLU(inplace=True)))
        self.deblocks = nn.ModuleList(deblocks)

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:
        """Backbone levels -> one map with sum(out_channels) channels (384 for the AWML presets)."""
        ups = [deblock(x[i]) for i, deblock in enumerate(self.deblocks)]
        return torch.cat(ups, dim=1) if len(ups) > 1 else ups[0]

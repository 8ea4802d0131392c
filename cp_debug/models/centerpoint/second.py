"""mmdet3d's SECOND backbone: three blocks of [Conv3x3 (no bias), BN, ReLU] x (1 + layer_num)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class SECOND(nn.Module):
    """Each `blocks.{i}` is an nn.Sequential: convs at indices 0, 3, 6, ..., BNs at 1, 4, 7, ..., ReLUs between.

    forward returns one feature map per block (strides accumulate: 1, 2, 4 for layer_strides [1, 2, 2]).
    """

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: Sequence[int] = (64, 128, 256),
        layer_nums: Sequence[int] = (3, 5, 5),
        layer_strides: Sequence[int] = (1, 2, 2),
        *,
        eps: float = 1e-3,
        momentum: float = 0.01,
    ):
        super().__init__()
        in_filters = [in_channels, *list(out_channels)[:-1]]
        blocks = []
        for i, layer_num in enumerate(layer_nums):
            block = [
                nn.Conv2d(in_filters[i], out_channels[i], 3, stride=layer_strides[i], padding=1, bias=False),
                nn.BatchNorm2d(out_channels[i], eps=eps, momentum=momentum),
                nn.ReLU(inplace=True),
            ]
            for _ in range(layer_num):
                block += [
                    nn.Conv2d(out_channels[i], out_channels[i], 3, padding=1, bias=False),
                    nn.BatchNorm2d(out_channels[i], eps=eps, momentum=momentum),
                    nn.ReLU(inplace=True),
                ]
            blocks.append(nn.Sequential(*block))
        self.blocks = nn.ModuleList(blocks)

    def stage_names(self) -> tuple[str, ...]:
        """The children in execution order (the probes of the `stage` level, relative to this module)."""
        return tuple(f"blocks.{i}" for i in range(len(self.blocks)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return tuple(outs)

"""A model where FP16 error accumulates over many layers and no single one dominates, as `--torch FILE:FUNC`:
a chain of ten 3×3 conv + ReLU blocks of equal gain, each adding about the same float16 rounding error."""

from __future__ import annotations

import torch
from torch import nn


class Chain(nn.Module):
    def __init__(self, depth: int = 10, channels: int = 16):
        super().__init__()
        self.body = nn.Sequential(*[nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
                                    for _ in range(depth)])

    def forward(self, x):
        return self.body(x)


def build():
    g = torch.Generator().manual_seed(0)
    net = Chain()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * 9
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5 * 1.25
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.05
    return net.eval(), (torch.randn(1, 16, 32, 32, generator=g),)

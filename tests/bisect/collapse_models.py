"""A branch that underflows FP16 to all zeros behind a residual (issue 84, item 1: "a tensor collapsed to zero"):
`1.inner.tiny` scales its Linear by 1e-9 (|x| ≤ 8.6e-10, below float16's smallest subnormal 6e-8) and the block adds
1e4 × it to a residual, a 1e-5 share of the output — within FP16's budget, so the block's and the model's outputs hide
it. `healthy`: the same at 1e-5 (in float16's range)."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


class Inner(nn.Module):
    def __init__(self, tiny: float):
        super().__init__()
        self.proj = nn.Linear(16, 16)
        self.tiny = nn.Sequential(nn.Linear(16, 16), Scale(tiny))

    def forward(self, h):
        return self.proj(h) + 1e4 * self.tiny(h)


class Block(nn.Module):
    def __init__(self, tiny: float):
        super().__init__()
        self.inner = Inner(tiny)

    def forward(self, x):
        return x + self.inner(x)


def _net(tiny):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), Block(tiny), nn.Linear(16, 4)).eval()


def x():
    return (torch.randn(2, 8, generator=torch.Generator().manual_seed(1)),)


def collapsed():
    return _net(1e-9), x()


def healthy():
    return _net(1e-5), x()

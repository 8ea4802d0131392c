"""Branches that FP16 breaks behind a residual, which the block's and the model's outputs hide (issue 84, item 1).

`collapsed` ("a tensor collapsed to zero"): `1.inner.tiny` scales its Linear by 1e-9 (|x| ≤ 8.6e-10, below float16's
smallest subnormal 6e-8) and the block adds 1e4 × it to a residual, a 1e-5 share of the output — within FP16's
budget. `healthy`: the same at 1e-5 (in float16's range).
`cancelled` ("a module whose output error is large while its block's is small"): `1.inner.shifted.1` computes
(x + 1024) - 1024, which float32 gives back as x and float16 rounds to its spacing of 1 at 1024 — values of
|x| ~ 0.26 come back as -1, 0 or 1 (70% zeros, not all), a relative error of 0.67, no NaN/Inf — and the block adds
1e-3 × it to the residual. `shifted`: the same shift by 8 (float16's spacing 2^-7 there: a rel. error of 0.005)."""

from __future__ import annotations

import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


class Shift(nn.Module):
    """(x + c) - c: x again, to the format's spacing at c."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return (x + self.c) - self.c


class Inner(nn.Module):
    """proj(h) + share × branch(h), the branch a Linear and then `then` (a module named `name`)."""

    def __init__(self, name: str, then: nn.Module, share: float):
        super().__init__()
        self.proj = nn.Linear(16, 16)
        self.name, self.share = name, share
        self.add_module(name, nn.Sequential(nn.Linear(16, 16), then))

    def forward(self, h):
        return self.proj(h) + self.share * getattr(self, self.name)(h)


class Block(nn.Module):
    def __init__(self, inner: Inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return x + self.inner(x)


def _net(name: str, then: nn.Module, share: float, rows: int):
    torch.manual_seed(0)
    first = nn.Linear(8, 16)
    net = nn.Sequential(first, Block(Inner(name, then, share)), nn.Linear(16, 4)).eval()
    return net, (torch.randn(rows, 8, generator=torch.Generator().manual_seed(1)),)


def collapsed():
    return _net("tiny", Scale(1e-9), 1e4, 2)


def healthy():
    return _net("tiny", Scale(1e-5), 1e4, 2)


def cancelled():
    return _net("shifted", Shift(1024.0), 1e-3, 4)


def shifted():
    return _net("shifted", Shift(8.0), 1e-3, 4)

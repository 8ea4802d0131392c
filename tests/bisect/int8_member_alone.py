"""Issue 115, item 1: the layer that alone brings the outputs back ranked past the first three tried alone, so that
only the set search reaches it.

Three side branches `a`, `b`, `c` read the stem and add a thousandth of their sum to the main branch `d`. Each side
conv's weight has, in every output channel, an outlier of 40 on an input channel the stem leaves dead (its weight and
bias 0: ReLU(0) = 0): nothing in FP32, while its per-channel INT8 scale (40 / 127) rounds nearly all its other weights
(N(0, 0.1)) to zero — a local error of the whole branch, the largest of the run, that the thousandth hides at the
output. `d` has an outlier of 6 on the dead channel: a scale of 6 / 127 rounds its weights by about a seventh of
their size, a smaller own error (ranked fourth) that reaches the output whole. Left out of INT8 alone, `d` brings the
output back; any of `a`, `b`, `c` alone does not."""

from __future__ import annotations

import torch
from torch import nn


SIDE = {"a": 40.0, "b": 40.0, "c": 40.0}  # each side conv's outlier on the dead channel
MAIN = {"d": 15.0}


class MemberAlone(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        for name in (*SIDE, *MAIN):
            setattr(self, name, nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        side = sum(getattr(self, name)(h) for name in SIDE)
        return self.head(self.d(h) + 1e-3 * side)


def build():
    torch.manual_seed(0)
    net = MemberAlone().eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        net.stem.weight[0], net.stem.bias[0] = 0.0, 0.0  # input channel 0 of every later conv dead: ReLU(0) = 0
        for name, outlier in {**SIDE, **MAIN}.items():
            w = torch.randn(getattr(net, name).weight.shape, generator=g) * 0.1
            w[:, 0, 1, 1] = outlier
            getattr(net, name).weight.copy_(w)
    return net, (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)),)

"""Issue 115, item 1: a root cause that is a set — two convs whose INT8 rounding only together breaks the output.

Two parallel branches `a` and `b` read the same stem and are summed. Each one's weight has, in every output
channel, an outlier of 40 on an input channel the stem leaves dead (its weight and bias 0: ReLU(0) = 0), so the
outlier adds nothing in FP32 while its per-channel INT8 scale (40 / 127) rounds most of the branch's other weights
(N(0, 0.1)) to zero. Either branch left out of INT8 alone leaves the other's rounding at the output, beyond INT8's
budget; both left out bring it back."""

from __future__ import annotations

import torch
from torch import nn


class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        return self.head(self.a(h) + self.b(h))


def build():
    torch.manual_seed(0)
    net = TwoBranches().eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        net.stem.weight[0] = 0.0
        net.stem.bias[0] = 0.0
        for conv in (net.a, net.b):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.1)
            conv.weight[:, 0, 1, 1] = 40.0
    return net, (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)),)

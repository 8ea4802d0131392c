"""Issue 115, item 1: a set search that ends at a set holding a member that alone brings the outputs back.

Four convs read a stem whose input channel 0 is dead (its weight and bias 0: ReLU(0) = 0); each has, in every output
channel, an outlier on that channel: nothing in FP32, while its per-channel INT8 scale rounds its other weights
(N(0, 0.1)). `c` (outlier 80: its weights all round to zero) adds a thousandth of itself to the main branch: the
largest own error of the run, hidden at the output — ranked first. `x` and `y` (outlier 25) hold the same weights
and are subtracted (`twin`): in INT8 both round alike and cancel, so the difference is exact; left out of INT8 one at
a time, the other's rounding reaches the output whole. `d` (outlier 10, ranked after them) is the main branch: its
rounding alone breaks the output. With twins, `d` left out alone brings the output back, and so does {x, y, d};
{x, d} and {y, d} do not (one twin's rounding uncancelled): the set search (a prefix, then drops) ends at
{x, y, d} without running `d` alone. Without twins (`y`'s weights its own draw), the difference is off in INT8 too:
{x, y, d} is truly needed, no member alone does."""

from __future__ import annotations

import torch
from torch import nn

OUTLIER = {"c": 80.0, "x": 25.0, "y": 25.0, "d": 10.0}


class SetMember(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        for name in OUTLIER:
            setattr(self, name, nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        return self.head(self.d(h) + (self.x(h) - self.y(h)) + 1e-3 * self.c(h))


def build(twin: bool = True):
    torch.manual_seed(0)
    net = SetMember().eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        net.stem.weight[0], net.stem.bias[0] = 0.0, 0.0
        for name, outlier in OUTLIER.items():
            w = torch.randn(getattr(net, name).weight.shape, generator=g) * 0.1
            w[:, 0, 1, 1] = outlier
            getattr(net, name).weight.copy_(w)
        if twin:
            net.y.weight.copy_(net.x.weight)
            net.y.bias.copy_(net.x.bias)
    return net, (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)),)


def build_apart():
    return build(twin=False)

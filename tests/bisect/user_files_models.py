"""A small network for the user's own deployed files, as `FUNC() -> (module, example_inputs)` for `--torch FILE:FUNC`.

Four convs and a Linear head; `fp16_overflow` plants body.4 (a Conv) whose FP32 output reaches ~7.7e4, beyond FP16's
65504, with its weights (|w| < 850) inside what onnxconverter-common keeps (it clamps weights to ±1e4), and body.6
bringing the values back down (its weights above the converter's 1e-7 floor).
"""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def example() -> torch.Tensor:
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))


def healthy():
    torch.manual_seed(0)
    return Net().eval(), (example(),)


def fp16_overflow():
    net, inputs = healthy()
    with torch.no_grad():
        net.body[2].weight.mul_(20.0)
        net.body[4].weight.mul_(1e4)
        net.body[6].weight.mul_(1e-3)
    return net, inputs


def outlier_weight():
    """body.4's weight drawn N(0, 0.2) with one value of 54.9 (a trained conv's outlier, issue 115): a per-tensor
    INT8 scale (54.9 / 127) rounds 71% of the others to zero — this model's weights, rounded, whose relative RMS
    difference (0.107) passed the 0.1 past which a stored weight was said to be "not this model's". The outlier
    reads a channel body.2 leaves dead (its weight and bias 0: ReLU(0)), so it adds nothing: body.4's output rests
    on the weights rounded."""
    net, inputs = healthy()
    with torch.no_grad():
        net.body[2].weight[0] = 0.0
        net.body[2].bias[0] = 0.0
        w = torch.randn(net.body[4].weight.shape, generator=torch.Generator().manual_seed(3)) * 0.2
        w[0, 0, 1, 1] = 54.9
        net.body[4].weight.copy_(w)
    return net, inputs

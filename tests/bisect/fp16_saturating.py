"""Issue 115, item 1: an FP16 model whose first overflow is harmless and whose second wrecks the outputs.

`cube` computes a tanh-approximated GELU's 0.044715·x³, which leaves float16's range (|x|³ > 65504 for |x| > 40):
Inf in FP16, but its only consumer, the GELU's tanh, saturates at ±1 for it just as for the FP32 value, so the
model's output does not move. `norm` is a LayerNorm written out as ops, whose sum of squares (|x − mean|² ≈ 3e5)
overflows and zeroes the normalised rows: the outputs are wrecked. The own-error ranking puts the Inf first; the
intervention (keep each in FP32, run to the outputs) names the LayerNorm."""

from __future__ import annotations

import torch
from torch import nn


class Cube(nn.Module):
    def forward(self, y):
        return 0.044715 * (y * y * y)


class TanhGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.cube = Cube()

    def forward(self, y):
        return 0.5 * y * (1.0 + torch.tanh(0.7978845608 * (y + self.cube(y))))


class OpsLayerNorm(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        d = x - x.mean(-1, keepdim=True)
        var = (d * d).sum(-1, keepdim=True) / x.shape[-1]
        return d / torch.sqrt(var + 1e-5) * self.weight + self.bias


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.act = TanhGelu()
        self.norm = OpsLayerNorm(32)
        self.head = nn.Linear(32, 8)

    def forward(self, x):
        return self.head(self.norm(self.act(self.fc1(x))))


def build():
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.fc1.weight.mul_(200.0)  # activations of |x| ~ 100-600: x³ overflows, (x - mean)² reaches ~3e5
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    return net, (x,)

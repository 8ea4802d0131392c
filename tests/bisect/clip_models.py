"""A small CNN whose second block's ReLU6 sees activations of ~1e-8 (`tiny`: its conv scaled down, as a random-init or
badly scaled layer gives them): ONNX Runtime's ClipQuantFusion drops that ReLU6's Clip in front of the next conv's
QuantizeLinear (int8 range ±~2e-8, within float32's epsilon of the Clip's 0) and its negatives pass. `wide` is the twin
at ordinary scale, whose range lies far from the Clip's minimum."""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.act = nn.ReLU6()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.act(self.conv1(x)))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(_Block(3, 8), _Block(8, 16))
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        return self.head(self.features(x))


def _net(scale: float) -> tuple[nn.Module, tuple[torch.Tensor]]:
    torch.manual_seed(0)
    net = _Net().eval()
    with torch.no_grad():
        block = net.features[1]
        block.conv1.weight *= scale
        block.conv1.bias *= scale
        block.conv2.bias *= scale  # its output made of what the ReLU6 passes, not of its bias
    return net, (torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)),)


def tiny():
    return _net(1e-8)


def wide():
    return _net(1.0)

"""Small models with one planted fault each, as `FUNC() -> (module, example_inputs)` for `--torch FILE:FUNC`.

Every model is `body = Sequential(...)` of conv blocks; the fault sits in `body.2` unless said otherwise.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Net(nn.Module):
    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.body = nn.Sequential(*blocks)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(self.body(x))


def _init(net: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            m.weight.data = torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var.data = torch.rand(m.num_features, generator=g) + 0.5
    return net.eval()


def _input(seed: int, shape=(1, 8, 16, 16)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def healthy():
    """No fault: every backend should stay within tolerance."""
    net = _init(Net([_block(8, 8) for _ in range(4)]), 0)
    return net, (_input(1),)


def fp16_overflow():
    """body.2.0 produces activations around 1e5, beyond FP16's 65504; body.3 scales them back down."""
    net = _init(Net([_block(8, 8) for _ in range(4)]), 0)
    with torch.no_grad():
        net.body[2][0].weight.mul_(3e4)
        net.body[3][0].weight.mul_(1e-4)
    return net, (_input(1),)


class Gate(nn.Module):
    """Data-dependent control flow: the tracer freezes whichever branch the example inputs took."""

    def forward(self, x):
        if x.mean() > 0:
            return x * 2.0
        return -x


def frozen_branch():
    """body.0 is a Gate on the raw input; example inputs (positive mean) take the `x * 2` branch, inputs with
    a negative mean the other one — which the exported graph no longer has."""
    net = _init(Net([Gate(), _block(8, 8), _block(8, 8), _block(8, 8)]), 0)
    return net, (_input(1).abs(),)


def frozen_overflow():
    """body.0 is a Gate whose `x * 2` branch (the one the example takes) overflows float16 (inputs near 4e4): the
    FP16 fault is the Gate's, the frozen branch none of two ONNX backends running the one export."""
    net = _init(Net([Gate(), _block(8, 8), _block(8, 8)]), 0)
    return net, (_input(1).abs() * 4e4,)


def int8_hostile():
    """body.2.0's weights hold one outlier per output channel on a dead input channel: in FP32 it multiplies
    zeros, but per-channel INT8 weight scales are set by it and every other weight rounds to zero."""
    net = _init(Net([_block(8, 8) for _ in range(4)]), 0)
    with torch.no_grad():
        # body.1 output channel 0 is dead (ReLU of a strongly negative value)
        net.body[1][0].weight[0].zero_()
        net.body[1][1].bias[0] = -5.0
        net.body[1][1].running_mean[0] = 0.0
        net.body[2][0].weight[:, 0, 1, 1] = 60.0
    return net, (_input(1),)


class Offset(nn.Module):
    """Adds and removes a large offset around small values: exact in FP32, but FP16 keeps only ~0.004 of
    resolution next to 8.0, so the small values come back with a large relative (tiny absolute) error."""

    def forward(self, x):
        return (x * 0.01 + 8.0) - 8.0


class Grow(nn.Module):
    def __init__(self, gain: float):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1, bias=False)
        self.gain = gain

    def forward(self, x):
        return self.conv(x) * self.gain


def amplified():
    """body.1 (Offset) introduces an FP16 error that is still below the absolute tolerance; body.2 and body.3
    grow the values, so the tolerance is crossed only there. The root cause is body.1."""
    net = _init(Net([_block(8, 8), Offset(), Grow(100.0), Grow(3.0), _block(8, 8)]), 0)
    return net, (_input(1),)

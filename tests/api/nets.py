"""The library's test models: a small conv net, healthy, and the same net with a planted FP16 overflow (its first
conv's weights × 1e5, the next conv's ÷ 1e5: the FP32 outputs alike, the FP16 activations past 65504). `healthy` and
`planted` are `--torch FILE.py:FUNC` builders too, so the command and the library run the same model."""

from __future__ import annotations

import numpy as np
import torch


class SmallConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.head(torch.relu(self.c2(torch.relu(self.c1(x)))))


def net(planted: bool = False) -> SmallConvNet:
    torch.manual_seed(0)
    model = SmallConvNet().eval()
    if planted:
        with torch.no_grad():
            model.c1.weight.mul_(1e5)
            model.c1.bias.mul_(1e5)
            model.c2.weight.div_(1e5)
    return model


def sample() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)


def healthy():
    return net(), (torch.from_numpy(sample()),)


def planted():
    return net(planted=True), (torch.from_numpy(sample()),)

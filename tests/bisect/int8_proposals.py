"""Issue 115, item 3: a proposal-like model whose scores sit around the application's 0.6 threshold.

A small conv trunk scores 32 proposals through a Sigmoid; the head's bias spreads their FP32 scores around 0.6
(±0.03 in the logit). INT8's rounding, far within its expected error, moves one across 0.6: the application keeps
another set of proposals than the reference. `above` is its metric (`--metric FILE.py:above`): how many pass 0.6."""

from __future__ import annotations

import math

import torch
from torch import nn

THRESHOLD = 0.6


class Proposals(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8 * 8 * 8, 32)

    def forward(self, x):
        return torch.sigmoid(self.head(self.trunk(x).flatten(1)))


def build():
    torch.manual_seed(0)
    net = Proposals().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = net.head(net.trunk(x).flatten(1))[0]
        target = math.log(THRESHOLD / (1 - THRESHOLD)) + torch.linspace(-0.03, 0.03, 32)
        net.head.bias += target - logits
    return net, (x,)


def above(outputs, reference, label=None) -> float:
    """The proposals the application keeps: scores above 0.6."""
    scores = next(iter(outputs.values()))
    return float((scores > THRESHOLD).sum())

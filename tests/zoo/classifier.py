"""Small classifiers for the sample runs (`sweep` / `eval` / `fix --torch`): an MLP whose FP16 deployment overflows
in one Linear (`2`: weights ×400) only on large-magnitude inputs, and the same MLP healthy."""

from __future__ import annotations

import torch
from torch import nn

FEATURES, HIDDEN, CLASSES = 16, 32, 10
OVERFLOW_LAYER = "2"  # nn.Sequential's index of the Linear that leaves float16's range on large inputs


def _mlp(scale: float) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                        nn.Linear(HIDDEN, CLASSES))
    with torch.no_grad():
        net[2].weight.mul_(scale)
        net[4].weight.div_(scale)  # the logits keep their scale: only float16's range sees the large values
    return net.eval()


def build_overflow() -> tuple[nn.Module, tuple[torch.Tensor]]:
    return _mlp(400.0), (torch.randn(1, FEATURES),)


def build_healthy() -> tuple[nn.Module, tuple[torch.Tensor]]:
    return _mlp(1.0), (torch.randn(1, FEATURES),)

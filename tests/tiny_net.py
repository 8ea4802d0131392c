"""The suite's small CenterPoint-like conv net (Conv→BN→ReLU→Conv→ReLU→upsample→head) and its input/output names:
the `tiny` fixture of tests/conftest.py exports it once per session; tests/export/test_cache.py builds it too. A
module of its own so that conftest.py imports no torch in pytest-xdist's controller, which runs no test."""

from __future__ import annotations

import torch

INPUT_NAMES = ["x"]
OUTPUT_NAMES = ["out", "mean"]


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(4, 16, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(16)
        self.c2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        y = torch.relu(self.bn(self.c1(x)))
        y = torch.relu(self.c2(y))
        y = self.up(y)
        return self.head(y.permute(0, 2, 3, 1)).sigmoid(), y.mean()

"""Models for tests/backends/test_torch_fp8.py and benchmarks/fp8_torch_lanes.py, as `--torch FILE.py:FUNC` takes
them (FUNC() -> (module, example inputs)): the small CNN of tests/backends/test_ort_fp8.py, healthy and with its planted
weight outlier, and a transformer block of our own (nn.Linear projections of widths that are multiples of 16, so an
FP8 GEMM can take them, F.scaled_dot_product_attention, LayerNorm, a GELU MLP and a 10-wide head it cannot take)."""

from __future__ import annotations

import torch

from tests.backends.test_ort_fp8 import _net

WIDTH, HEADS, TOKENS = 64, 4, 16


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(WIDTH)
        self.qkv = torch.nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = torch.nn.Linear(WIDTH, WIDTH)
        self.norm2 = torch.nn.LayerNorm(WIDTH)
        self.fc1 = torch.nn.Linear(WIDTH, 4 * WIDTH)
        self.fc2 = torch.nn.Linear(4 * WIDTH, WIDTH)
        self.head = torch.nn.Linear(WIDTH, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, c))
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))
        return self.head(x)


def _inputs(*shape: int) -> tuple[torch.Tensor]:
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(0)),)


def cnn():
    return _net(False), _inputs(1, 3, 16, 16)


def cnn_fault():
    """Channel 5 of the first conv dead, its weights in the second conv 1e5: FP8's scale there flushes the rest."""
    return _net(True), _inputs(1, 3, 16, 16)


def block():
    torch.manual_seed(0)
    return Block().eval(), _inputs(2, TOKENS, WIDTH)


class Wide(torch.nn.Module):
    """Two transformer MLPs of 1024 → 4096 → 1024 over 512 tokens: GEMMs big enough for FP8's tensor cores to show."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(*(torch.nn.Sequential(
            torch.nn.LayerNorm(1024), torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024))
            for _ in range(2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.mlp:
            x = x + layer(x)
        return x


def wide():
    torch.manual_seed(0)
    return Wide().eval(), _inputs(1, 512, 1024)

"""Models for the FP8 reasons and cures (bisect/findings/segment_fp8.py), each with its fault planted where FP32 cannot
see
it and FP8's per-tensor scale can: the small CNN of tests/backends/test_ort_fp8.py, and a pre-LayerNorm transformer
block of our own (self-attention and an MLP, random weights) whose MLP input carries one outlier feature — the
"massive activation" of LLMs — that its first Linear reads with zero weights."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tests.backends.test_ort_fp8 import SmallCnn

CNN_CONV2 = "/body/body.2/Conv_output_0"
CNN_CONV0 = "/body/body.0/Conv_output_0"


def cnn(fault: str | None) -> nn.Module:
    """The small CNN, healthy or with a planted fault:
    "activation": channel 5 of the first conv's output is ~1e6 (its bias) and the second conv reads it with zero
        weights: no effect in FP32; in FP8 that channel sets the second conv's input scale and flushes the rest.
    "weight": channel 5 of the first conv is dead (0 after its ReLU) and output channel 7 of the second conv reads it
        with a weight of 1e5: no effect in FP32; in FP8 it sets the per-tensor weight scale and flushes every other
        weight — one scale per output channel keeps them."""
    torch.manual_seed(0)
    net = SmallCnn().eval()
    with torch.no_grad():
        if fault == "activation":
            net.body[0].bias[5] = 1e6
            net.body[2].weight[:, 5] = 0.0
        elif fault == "weight":
            net.body[0].weight[5].zero_()
            net.body[0].bias[5] = -1.0
            net.body[2].weight[7, 5] = 1e5
    return net


class Block(nn.Module):
    """Pre-LayerNorm self-attention and MLP with residuals, width 32, 4 heads."""

    def __init__(self, width: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(torch.relu(self.fc1(self.ln2(x))))


def block(fault: bool) -> nn.Module:
    """The block; `fault`: feature 3 of the MLP's input is ~1e6 (ln2's bias) and fc1 reads it with zero weights."""
    torch.manual_seed(0)
    net = Block().eval()
    if fault:
        with torch.no_grad():
            net.ln2.bias[3] = 1e6
            net.fc1.weight[:, 3] = 0.0
    return net


def export(net: nn.Module, example: torch.Tensor, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), input_names=["x"], output_names=["y"], dynamo=False,
                          opset_version=17)
    return path


def cnn_example() -> torch.Tensor:
    return torch.zeros(1, 3, 16, 16)


def cnn_input(scale: float = 1.0, n: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (1, 3, 16, 16) if n is None else (n, 1, 3, 16, 16)
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def block_input() -> torch.Tensor:
    return torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1))

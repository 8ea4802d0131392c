"""A token encoder whose FP16 pooled sum overflows only on long inputs (issue 110): a linear token embedding, a
two-layer MLP and `pool`, the sum over the sequence, then a small head. One feature of every token is about 40 after
the MLP, so the pooled sum passes FP16's 65504 past ~1,600 tokens: the 64- and 512-token samples stay within FP16,
the 2,048- and 4,096-token ones overflow at `pool` (its ReduceSum). `build()` gives a 128-token example (the shape
the export would freeze); this file declares no dynamic axes (cp_debug infers them from the samples' shapes),
token_encoder_dynamic.py is the same model with its `dynamic()`."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FEATURES = 16  # each token's features (the input's last axis)
HIDDEN = 32
EXAMPLE_TOKENS = 128
PER_TOKEN = 40.0  # the loud feature's value per token: 65504 / 40 ≈ 1,638 tokens


class Pool(nn.Module):
    """The sum over the sequence (axis 1): a ReduceSum in ONNX, named `pool`."""

    def forward(self, x):
        return x.sum(dim=1)


class TokenEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(FEATURES, HIDDEN)
        self.mlp = nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.ReLU())
        self.pool = Pool()
        self.head = nn.Linear(HIDDEN, 8)
        with torch.no_grad():  # feature 0 of every token ≈ PER_TOKEN whatever the token: the sum grows with length
            self.mlp[0].weight[0].mul_(0.01)
            self.mlp[0].bias[0] = PER_TOKEN
            self.head.weight.mul_(1e-3)

    def forward(self, x):
        return self.head(self.pool(self.mlp(self.embed(x))))


def build():
    torch.manual_seed(0)
    return TokenEncoder().eval(), (torch.randn(1, EXAMPLE_TOKENS, FEATURES),)


def write_samples(folder, lengths=(64, 512, 2048, 4096), per_length: int = 1, seed: int = 0):
    """`seq<N>[_k].npz` (input `x`, [1, N, FEATURES]) for each length: the samples of a sweep or a fix."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        for k in range(per_length):
            path = folder / (f"seq{n:04d}.npz" if per_length == 1 else f"seq{n:04d}_{k}.npz")
            np.savez(path, x=rng.standard_normal((1, n, FEATURES)).astype(np.float32))
            out.append(path)
    return out

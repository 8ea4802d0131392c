"""FP16 overflow that ONNX Runtime's CPU provider really shows, for `--torch FILE:FUNC` (loaded by path).

ORT's CPU provider has no float16 Conv/Relu kernels: it runs them in float32 between Casts and drops the
Cast pairs in between, so `planted.fp16_overflow` never materialises its 1e5 activations in float16 there.
Ops it does run in float16 (Slice, Concat: data movement) keep the float16 tensor, and the overflow is real —
as in CenterPoint's neck, which concatenates its upsampled feature maps.
"""

from __future__ import annotations

import torch
from planted import fp16_overflow  # importable: `--torch` puts this file's folder on sys.path while loading it
from torch import nn


class ChannelConcat(nn.Module):
    """Split the channels in two halves and concatenate them again: an identity made of Slice and Concat."""

    def forward(self, x):
        half = x.shape[1] // 2
        return torch.cat([x[:, :half], x[:, half:]], 1)


def fp16_overflow_concat():
    """`planted.fp16_overflow` with a ChannelConcat after body.2 (body.2.3): its ~1e5 values pass through float16."""
    net, inputs = fp16_overflow()
    net.body[2].append(ChannelConcat())
    return net, inputs

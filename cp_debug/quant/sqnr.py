"""Per-layer quantization error: SQNR and the shares of values clipped and rounded to zero.

For each quantized layer, its weight and its input (the FP32 model's input to that layer, i.e. the LOCAL error
of quantizing that one tensor, nothing propagated) are quantize-dequantized with the layer's amax:
  SQNR = 20 log10(||x|| / ||x - q(x)||) dB (inf where q(x) == x),
  clipped = share of values whose code falls outside [-128, 127] (saturated),
  zeroed  = share of the non-zero values rounded to code 0.
Activation figures accumulate over every scene the forward loop runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from cp_debug.quant.quantizers import BOUND, QMAX, QMIN, quantized_layers, without_quantizers


@dataclass(frozen=True)
class QuantError:
    layer: str
    tensor: str  # "weight" or "input"
    granularity: str  # "per-tensor" or "per-channel (axis k)"
    amax: float  # the largest amax (per-channel: the max over channels)
    sqnr_db: float
    clipped: float
    zeroed: float
    numel: int


@dataclass(frozen=True)
class QuantErrorTable:
    rows: tuple[QuantError, ...]
    scenes: int

    def worst(self, n: int | None = None, tensor: str | None = None) -> list[QuantError]:
        rows = [r for r in self.rows if tensor is None or r.tensor == tensor]
        return sorted(rows, key=lambda r: r.sqnr_db)[:n]

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.rows])

    def to_json(self) -> dict:
        return {"scenes": self.scenes, "rows": [asdict(r) for r in self.rows]}


class _Acc:
    def __init__(self) -> None:
        self.signal = self.noise = 0.0
        self.clipped = self.zeroed = self.nonzero = self.numel = 0

    def add(self, x: torch.Tensor, amax: torch.Tensor, axis: int | None) -> None:
        x = x.detach().float()
        a = amax.detach().float().to(x.device).clamp_min(1e-8)
        if axis is not None and a.numel() > 1:
            shape = [1] * x.dim()
            shape[axis] = -1
            scale = a.reshape(shape) / BOUND
        else:
            scale = a.reshape(()) / BOUND
        code = torch.round(x / scale)
        q = code.clamp(QMIN, QMAX) * scale
        self.signal += float((x.double() ** 2).sum())
        self.noise += float(((x - q).double() ** 2).sum())
        self.clipped += int(((code > QMAX) | (code < QMIN)).sum())
        nz = x != 0
        self.zeroed += int((nz & (code == 0)).sum())
        self.nonzero += int(nz.sum())
        self.numel += x.numel()

    def row(self, layer: str, tensor: str, amax: torch.Tensor, axis: int | None) -> QuantError:
        if self.noise == 0:
            sqnr = math.inf
        elif self.signal == 0:
            sqnr = -math.inf
        else:
            sqnr = 10 * math.log10(self.signal / self.noise)
        gran = f"per-channel (axis {axis})" if axis is not None and amax.numel() > 1 else "per-tensor"
        return QuantError(layer, tensor, gran, float(amax.max()), sqnr, self.clipped / max(self.numel, 1),
                          self.zeroed / max(self.nonzero, 1), self.numel)


def quantization_error(model: nn.Module, forward_loop: Callable[[nn.Module], int]) -> QuantErrorTable:
    """Weight and (local) input error of every calibrated quantized layer of `model`; the inputs are those seen
    while `forward_loop(model)` runs with every quantizer off (FP32). The quantizers' states are restored."""
    layers = {n: m for n, m in quantized_layers(model).items()
              if m._input_quantizer.amax is not None or m._weight_quantizer.amax is not None}
    accs = {n: _Acc() for n in layers}
    hooks = []

    def hook(name):
        def pre(mod, args):
            if mod._input_quantizer.amax is not None:
                accs[name].add(args[0], mod._input_quantizer.amax, None)
        return pre

    with without_quantizers(model, layers):
        try:
            for n, m in layers.items():
                hooks.append(m.register_forward_pre_hook(hook(n)))
            with torch.no_grad():
                scenes = int(forward_loop(model))
        finally:
            for h in hooks:
                h.remove()
    rows = []
    for n, m in layers.items():
        wq, iq = m._weight_quantizer, m._input_quantizer
        if wq.amax is not None:
            acc = _Acc()
            acc.add(m.weight, wq.amax, wq.axis)
            rows.append(acc.row(n, "weight", wq.amax, wq.axis))
        if iq.amax is not None and accs[n].numel:
            rows.append(accs[n].row(n, "input", iq.amax, None))
    return QuantErrorTable(tuple(rows), scenes)

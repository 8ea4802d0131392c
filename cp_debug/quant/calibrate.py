"""Calibration: max, percentile, MSE and entropy amax from the values each quantizer sees.

Weights always take the max of |w| per output channel (what pytorch-quantization and ModelOpt do for
weights). Activations take `method`: "max" (running max of |x|), or one of "percentile", "mse", "entropy"
computed from a histogram of |x| (2048 bins of fixed width that grows in whole bins as larger values arrive,
as pytorch-quantization's HistogramCalibrator does):
  percentile: the |x| below which `percentile` % of the values lie;
  mse: the amax minimising the mean squared quantize-dequantize error over the histogram;
  entropy: TensorRT's KL-divergence method (128 quantized bins; candidates every few bins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from cp_debug.errors import BadInputError
from cp_debug.quant.quantizers import BOUND, QMAX, quantized_layers

METHODS = ("max", "percentile", "mse", "entropy")
NUM_BINS = 2048


class MaxCalibrator:
    """Running max of |x|, over everything or per channel along `axis` (kept with its dims, e.g. [C,1,1,1])."""

    def __init__(self, axis: int | None = None):
        self.axis = axis
        self.amax: torch.Tensor | None = None

    def collect(self, x: torch.Tensor) -> None:
        a = x.detach().abs().float()
        if self.axis is None:
            m = a.max()
        else:
            dims = [d for d in range(a.dim()) if d != self.axis]
            m = a.amax(dim=dims, keepdim=True)
        self.amax = m if self.amax is None else torch.maximum(self.amax, m)

    def compute_amax(self, method: str = "max", percentile: float = 99.99) -> torch.Tensor:
        if self.amax is None:
            raise BadInputError("a calibrator saw no data: the calibration run never reached this layer")
        return self.amax.detach().cpu()


class HistogramCalibrator:
    """A histogram of |x| with fixed-width bins, extended when a larger value arrives."""

    def __init__(self, num_bins: int = NUM_BINS):
        self.num_bins = num_bins
        self.hist: torch.Tensor | None = None  # float64 counts
        self.width = 0.0
        self.max = 0.0

    def collect(self, x: torch.Tensor) -> None:
        a = x.detach().abs().float().reshape(-1)
        xmax = float(a.max()) if a.numel() else 0.0
        if self.hist is None:
            self.width = max(xmax, 1e-12) / self.num_bins
            self.hist = torch.zeros(self.num_bins, dtype=torch.float64)
        nbins = self.hist.numel()
        if xmax > nbins * self.width:
            nbins = int(math.ceil(xmax / self.width))
            self.hist = torch.cat([self.hist, torch.zeros(nbins - self.hist.numel(), dtype=torch.float64)])
        self.max = max(self.max, xmax)
        h = torch.histc(a.cpu(), bins=nbins, min=0.0, max=nbins * self.width)
        self.hist += h.double()

    def compute_amax(self, method: str = "mse", percentile: float = 99.99) -> torch.Tensor:
        if self.hist is None or float(self.hist.sum()) == 0:
            raise BadInputError("a calibrator saw no data: the calibration run never reached this layer")
        hist = self.hist.numpy()
        edges = np.arange(hist.size + 1, dtype=np.float64) * self.width
        if method == "max":
            amax = self.max
        elif method == "percentile":
            amax = _percentile_amax(hist, edges, percentile)
        elif method == "mse":
            amax = _mse_amax(hist, edges)
        elif method == "entropy":
            amax = _entropy_amax(hist, edges)
        else:
            raise BadInputError(f"unknown calibration method {method!r}: choose {', '.join(METHODS)}")
        return torch.tensor(float(min(amax, self.max) if self.max > 0 else amax), dtype=torch.float32)


def _percentile_amax(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    if not 0 < percentile <= 100:
        raise BadInputError(f"--percentile must be in (0, 100], got {percentile}")
    cdf = np.cumsum(hist) / hist.sum()
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    return float(edges[min(idx + 1, len(edges) - 1)])


def _mse_amax(hist: np.ndarray, edges: np.ndarray, start: int = 128) -> float:
    """argmin over candidate amax (bin edges from `start` on) of sum(hist * (c - qdq(c))^2), c = bin centres."""
    centres = (edges[:-1] + edges[1:]) / 2
    n = hist.size
    cands = edges[min(start, n - 1) + 1:]
    stride = max(1, len(cands) // 512)
    cands = cands[::stride]
    nz = hist > 0
    c, h = centres[nz], hist[nz]
    best, best_err = float(edges[-1]), math.inf
    for chunk in np.array_split(cands, max(1, len(cands) // 64)):
        scale = chunk[:, None] / BOUND
        q = np.clip(np.round(c[None, :] / scale), None, QMAX) * scale
        err = ((c[None, :] - q) ** 2 * h[None, :]).sum(1)
        i = int(np.argmin(err))
        if err[i] < best_err:
            best, best_err = float(chunk[i]), float(err[i])
    return best


def _entropy_amax(hist: np.ndarray, edges: np.ndarray, num_quant_bins: int = 128) -> float:
    """TensorRT's KL method: the threshold whose 128-level quantization of the clipped histogram diverges least."""
    n = hist.size
    if n <= num_quant_bins:
        return float(edges[-1])
    stride = max(1, (n - num_quant_bins) // 256)
    total = hist.sum()
    best_i, best_kl = n, math.inf
    for i in range(num_quant_bins, n + 1, stride):
        sliced = hist[:i]
        p = sliced.copy()
        p[i - 1] += hist[i:].sum()  # the reference keeps the clipped outliers in its last bin...
        nonzero = sliced > 0
        base, extra = divmod(i, num_quant_bins)
        sizes = np.full(num_quant_bins, base)
        sizes[:extra] += 1
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        gid = np.repeat(np.arange(num_quant_bins), sizes)
        sums = np.add.reduceat(sliced, starts)  # ...the candidate is quantized from the unclipped slice
        counts = np.add.reduceat(nonzero.astype(np.float64), starts)
        per = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        q = per[gid] * nonzero
        pn = p / total
        qs = q.sum()
        if qs == 0:
            continue
        qn = q / qs
        pz = p > 0
        m = pz & (qn > 0)
        kl = float(np.sum(pn[m] * np.log(pn[m] / qn[m]))) + (math.inf if (pz & (qn == 0)).any() else 0.0)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return float(edges[best_i])


@dataclass(frozen=True)
class CalibrationResult:
    method: str
    layers: int
    batches: int
    seconds: float


def calibrate(model: nn.Module, forward_loop: Callable[[nn.Module], int], method: str = "mse",
              percentile: float = 99.99) -> CalibrationResult:
    """Set every quantized layer's amax: weights per channel from the weights themselves, inputs by `method`
    from the values seen while `forward_loop(model)` runs (it returns the number of batches it ran; the model
    runs in FP32 meanwhile). amax buffers end on the CPU."""
    import time

    if method not in METHODS:
        raise BadInputError(f"unknown calibration method {method!r}: choose {', '.join(METHODS)}")
    layers = quantized_layers(model)
    if not layers:
        raise BadInputError("the model has no quantized layer to calibrate")
    t0 = time.perf_counter()
    for m in layers.values():
        wq = m._weight_quantizer
        cal = MaxCalibrator(wq.axis)
        cal.collect(m.weight)
        wq.set_amax(cal.compute_amax())
        m._input_quantizer.calibrator = MaxCalibrator() if method == "max" else HistogramCalibrator()
    try:
        with torch.no_grad():
            batches = int(forward_loop(model))
        if batches < 1:
            raise BadInputError("calibration ran no batch: give at least one calibration scene")
        for name, m in layers.items():
            cal = m._input_quantizer.calibrator
            try:
                m._input_quantizer.set_amax(cal.compute_amax(method, percentile))
            except BadInputError as err:
                raise BadInputError(f"layer {name}: {err}") from None
    finally:
        for m in layers.values():
            m._input_quantizer.calibrator = None
    return CalibrationResult(method, len(layers), batches, time.perf_counter() - t0)

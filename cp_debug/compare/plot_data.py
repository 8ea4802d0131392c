"""Small arrays for plots, kept in the JSON report (`report.plots[label]`) so a saved run can be re-plotted.

`error_histogram`: how |test - ref| is distributed, on log-spaced bins. `error_heatmap`: where in a BEV grid
the error lives — mean over channels of |test - ref|, max-pooled to at most `max_side` cells per side.
Non-finite errors (NaN/Inf in the candidate) are counted, never hidden: the heat map marks their cells "inf".
"""

from __future__ import annotations

import math

import numpy as np

from cp_debug.compare import kernels
from cp_debug.compare.diff import all_finite
from cp_debug.parallel import run_parts, split, thread_count
from cp_debug.errors import BadInputError
from cp_debug.half import as_float32


# a sample of 65,536 errors draws 50 log bins well (1,300 a bin on average); np.histogram sorts its sample: 1 << 18
# cost DenseNet-121's 1,746 probes 0.7 s of a 9 s CPU bisect, 1 << 20 an awml-base H100 bisect 1.2 s more
MAX_HISTOGRAM_ELEMENTS = 1 << 16


def error_histogram(ref: np.ndarray, test: np.ndarray, bins: int = 50, *, probe: str | None = None,
                    max_elements: int = MAX_HISTOGRAM_ELEMENTS) -> dict:
    """{"probe", "edges" (bins+1, log-spaced), "counts" (bins), "zeros", "nonfinite", "total", "scale": "log",
    "every": k}.

    Exact matches (|diff| == 0) cannot sit on a log axis: they are counted in "zeros". A tensor of more than
    `max_elements` elements is sampled: every k-th element ("every": k); counts, zeros, nonfinite and total are
    then of the sample, `source_total` is the tensor's size.
    """
    size = int(np.asarray(ref).size)
    return errors_histogram(sample_errors(ref, test, max_elements), histogram_stride(size, max_elements), size, bins,
                            probe=probe)


def sample_errors(ref: np.ndarray, test: np.ndarray, max_elements: int = MAX_HISTOGRAM_ELEMENTS) -> np.ndarray:
    """The errors `error_histogram` bins, as a new array (every k-th |test - ref|; `test is ref`: 0 where finite,
    NaN where not): `errors_histogram` of it is `error_histogram(ref, test)`."""
    ref, test = np.asarray(ref), np.asarray(test)
    _same_shape(ref, test, "error_histogram")
    every = histogram_stride(int(ref.size), max_elements)
    same = test is ref  # one array (bit-identical runs): every difference is an exact 0 unless it is NaN/Inf
    if every > 1:
        ref, test = ref.reshape(-1)[::every], test.reshape(-1)[::every]
    return _errors(ref, test, same)


def _errors(ref: np.ndarray, test: np.ndarray, same: bool) -> np.ndarray:
    """|test - ref| of a sample as `errors_histogram` bins it; `same` (one array: bit-identical runs): 0 where
    finite, NaN where not."""
    return np.where(np.isfinite(ref), 0.0, np.nan) if same else _absdiff(ref, test, "error_histogram")


def histogram_stride(size: int, max_elements: int = MAX_HISTOGRAM_ELEMENTS) -> int:
    """The k of `error_histogram`'s sample (every k-th element of a tensor of `size` elements)."""
    return max(1, -(-size // max_elements))


def sampled_histogram(ref: np.ndarray, test: np.ndarray, every: int, source_total: int, bins: int = 50, *,
                      probe: str | None = None) -> dict:
    """`error_histogram` of the sample `ref`/`test` already taken (every `every`-th of `source_total` elements;
    `test is ref`: one array). The device path (`device_plots.DevicePlots`) counts where the tensors lie and builds
    the same JSON with `histogram_edges` and `histogram_dict`."""
    return errors_histogram(_errors(ref, test, test is ref), every, source_total, bins, probe=probe)


def errors_histogram(d: np.ndarray, every: int, source_total: int, bins: int = 50, *,
                     probe: str | None = None) -> dict:
    """`error_histogram`'s JSON from its sampled errors `d` (|test - ref|, NaN/inf where not finite)."""
    finite = np.isfinite(d)
    pos = d[finite & (d > 0)]
    edges = histogram_edges(float(pos.min()), float(pos.max()), bins) if pos.size else None
    counts = np.histogram(pos, bins=edges)[0] if pos.size else None
    return histogram_dict(int(d.size), int((finite & (d == 0)).sum()), int((~finite).sum()), every, source_total,
                          edges, counts, probe=probe)


def histogram_edges(lo: float, hi: float, bins: int = 50) -> np.ndarray:
    """The log-spaced edges of a histogram of positive errors from `lo` to `hi` (widened where they are one value);
    the first and last edge are `lo` and `hi` exactly."""
    if hi <= lo * 1.0001:
        lo, hi = lo / 1.5, hi * 1.5
    return np.geomspace(lo, hi, int(bins) + 1)


def histogram_dict(total: int, zeros: int, nonfinite: int, every: int, source_total: int, edges, counts, *,
                   probe: str | None = None) -> dict:
    """`error_histogram`'s JSON from its counts (`edges`/`counts` None where no error is positive)."""
    out = {"probe": probe, "scale": "log", "total": total, "zeros": zeros, "nonfinite": nonfinite,
           "edges": [], "counts": [], "every": every}
    if every > 1:
        out["source_total"] = source_total
    if edges is not None:
        out["edges"] = [float(f"{e:.6g}") for e in edges]
        out["counts"] = [int(c) for c in counts]
    return out


def error_heatmap(ref: np.ndarray, test: np.ndarray, max_side: int = 128, *, probe: str | None = None) -> dict:
    """{"probe", "shape": [h, w], "source_shape": [H, W], "pool": [kh, kw], "data": h×w nested lists,
    "channel_reduce": "mean", "batch_reduce": "max", "pool_reduce": "max", "nonfinite_cells": n}.

    Takes (B, C, H, W), (C, H, W) or (H, W). A cell whose channels hold a NaN/Inf error is "inf".
    """
    return pooled_heatmap(error_map(ref, test), max_side, probe=probe)


def error_map(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The (H, W) map `error_heatmap` pools: max over the batch of the channel mean of |test - ref| (inf where not
    finite)."""
    ref, test = np.asarray(ref), np.asarray(test)
    _same_shape(ref, test, "error_heatmap")
    if ref.ndim not in (2, 3, 4):
        raise BadInputError(f"error_heatmap needs a (B,C,H,W), (C,H,W) or (H,W) tensor, got shape {list(ref.shape)}")
    if ref.size == 0:
        raise BadInputError(f"error_heatmap got an empty tensor of shape {list(ref.shape)}")
    lead = (1,) * (4 - ref.ndim)
    if test is ref and all_finite(ref):  # one array: no error anywhere
        return np.zeros(ref.shape[-2:], np.float64)
    return _channel_mean_error(ref.reshape(lead + ref.shape), test.reshape(lead + test.shape))


def heatmap_shape_ok(shape: tuple[int, ...]) -> bool:
    """Whether a probe of `shape` gets a heat map beside its histogram (image-like: 3 or 4 dims, sides >= 8)."""
    return len(shape) in (3, 4) and min(shape[-2:]) >= 8


def pooled_heatmap(d: np.ndarray, max_side: int = 128, *, probe: str | None = None) -> dict:
    """`error_heatmap` from its (H, W) error map (max over the batch of the channel mean of |test - ref|,
    non-finite as inf): max-pooled to at most `max_side` cells a side, 4 significant digits."""
    return heatmap_dict(*pool_map(d, max_side), probe=probe)


def pool_map(d: np.ndarray, max_side: int = 128) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """(the max-pooled map, the source's (H, W), the pool's (kh, kw)) of an (H, W) error map: `heatmap_dict`'s
    arguments, as `pooled_heatmap` pools it."""
    H, W = d.shape
    (h, w), (kh, kw) = heatmap_pool(H, W, max_side)
    padded = np.asarray(d, np.float64)
    if (h * kh, w * kw) != (H, W):  # the last row and column padded with zeros (errors are >= 0 or inf)
        padded = np.zeros((h * kh, w * kw), dtype=np.float64)
        padded[:H, :W] = d
    return padded.reshape(h, kh, w, kw).max(axis=(1, 3)), (H, W), (kh, kw)


def heatmap_pool(H: int, W: int, max_side: int = 128) -> tuple[tuple[int, int], tuple[int, int]]:
    """The pooled map's (h, w) and the pool's (kh, kw) for an (H, W) error map: at most `max_side` cells a side,
    the last row and column padded with zeros."""
    kh, kw = max(1, math.ceil(H / max_side)), max(1, math.ceil(W / max_side))
    return (math.ceil(H / kh), math.ceil(W / kw)), (kh, kw)


def heatmap_dict(pooled: np.ndarray, source: tuple[int, int], pool: tuple[int, int], *,
                 probe: str | None = None) -> dict:
    """`error_heatmap`'s JSON from the max-pooled map (non-finite cells as inf)."""
    # 4 significant digits (plenty for a plot, and it keeps the JSON small), "inf" where not finite
    data = _significant(pooled, 4).tolist()
    for i, j in zip(*np.nonzero(~np.isfinite(pooled))):
        data[i][j] = "inf"
    return {"probe": probe, "shape": list(pooled.shape), "source_shape": list(source), "pool": list(pool),
            "data": data, "channel_reduce": "mean", "batch_reduce": "max", "pool_reduce": "max",
            "nonfinite_cells": int((~np.isfinite(pooled)).sum())}


def _significant(a: np.ndarray, digits: int) -> np.ndarray:
    """`a` (float64, >= 0) rounded to `digits` significant digits, each value the float nearest that decimal
    (what `float(f"{v:.4g}")` gives, without formatting every cell); zeros and non-finite values unchanged."""
    out = np.array(a, dtype=np.float64)
    pick = np.isfinite(out) & (out != 0)
    v = out[pick]
    k = (digits - 1) - np.floor(np.log10(np.abs(v)))  # decimal places to keep
    up = np.power(10.0, np.abs(k))  # an exact power of ten up to 1e22: the division rounds once, to the nearest
    out[pick] = np.where(k >= 0, np.round(v * up) / up, np.round(v / up) * up)
    return out


def _channel_mean_error(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(B, C, H, W) → (H, W): max over the batch of the channel mean of |test - ref|, one channel at a time
    (no full-size temporaries); non-finite errors become inf."""
    B, C, H, W = ref.shape
    worst = np.zeros((H, W), np.float64)

    def channels(b: int, lo: int, hi: int) -> np.ndarray:
        acc = None
        for c in range(lo, hi):
            d = _absdiff(ref[b, c], test[b, c], "error_heatmap")
            acc = d if acc is None else np.add(acc, d, out=acc)
        return acc if acc is not None else np.zeros((H, W), np.float64)

    threads = thread_count() if ref.size >= (1 << 21) else 1
    compiled = ref.dtype in kernels.SINGLE and test.dtype in kernels.SINGLE and kernels.worth(ref.size)
    for b in range(B):
        if compiled:  # one pass over both arrays (compare/kernels.py)
            acc = kernels.channel_abs_sum(np.ascontiguousarray(ref[b]), np.ascontiguousarray(test[b]))
        else:
            acc = np.zeros((H, W), np.float64)
            for part in run_parts(lambda lo, hi, b=b: channels(b, lo, hi), split(C, min(threads, C))):
                acc += part  # float32 parts (float32/float16 tensors) are summed in float64 here
        acc /= C
        np.nan_to_num(acc, copy=False, nan=np.inf, posinf=np.inf)
        np.maximum(worst, acc, out=worst)
    return worst


def _same_shape(ref: np.ndarray, test: np.ndarray, who: str) -> None:
    if ref.shape != test.shape:
        raise BadInputError(f"{who}: shapes differ ({list(ref.shape)} vs {list(test.shape)}); nothing to plot")


def _absdiff(ref: np.ndarray, test: np.ndarray, who: str) -> np.ndarray:
    """|test - ref| as a new array: float32 for float32/float16 operands (float16 converted through
    `cp_debug.half`, numpy's own conversion being 20 times slower), else float64."""
    ref, test = np.asarray(ref), np.asarray(test)
    _same_shape(ref, test, who)
    if ref.dtype in kernels.SINGLE and test.dtype in kernels.SINGLE:
        ref, test = as_float32(ref), as_float32(test)
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.subtract(test, ref, out=np.empty(ref.shape, np.float32))  # an array also for a 0-d probe
            return np.abs(d, out=d)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.abs(test.astype(np.float64) - ref.astype(np.float64))


class HostPlots:
    """One probe's plots kept as their material until a report asks (a bisect draws a few: `verdict.assemble_report`):
    the sampled errors `error_histogram` bins (at most `MAX_HISTOGRAM_ELEMENTS`) and the max-pooled heat map (at most
    128 × 128 float64; None where the tensor is not image-like), measured while the probe's values live. `histogram`,
    `heatmap` and `to_json()` are `error_histogram`'s and `error_heatmap`'s, made on first use (not kept: a report
    asks once); `has_heatmap` asks without making. The host's `compare.device_plots.DevicePlots`."""

    def __init__(self, name: str, ref: np.ndarray, test: np.ndarray, heatmap: bool):
        ref, test = np.asarray(ref), np.asarray(test)
        self.name, self.every, self.n = name, histogram_stride(int(ref.size)), int(ref.size)
        self._errors = sample_errors(ref, test)
        self._pooled = pool_map(error_map(ref, test)) if heatmap else None
        self.has_heatmap = heatmap

    @property
    def histogram(self) -> dict:
        return errors_histogram(self._errors, self.every, self.n, probe=self.name)

    @property
    def heatmap(self) -> dict | None:
        return None if self._pooled is None else heatmap_dict(*self._pooled, probe=self.name)

    def to_json(self) -> dict:
        heatmap = self.heatmap
        return {"histogram": self.histogram, **({"heatmap": heatmap} if heatmap is not None else {})}

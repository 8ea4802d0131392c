"""The plot arrays of probe errors (`plot_data.error_histogram`, `error_heatmap`) counted where the tensors lie (a
GPU, say), made when a report asks for them.

A bisect compares every probe but its report draws a few: each candidate's root cause and the heat maps of the
layers beside it (`verdict.assemble_report`). Making every probe's histogram and heat map as it was compared cost an
awml-base `--level all` bisect ~0.4 s on an H200 (~105 probes, five waits on the device a probe, and each map's
16,384 cells rounded into JSON). Here a comparison leaves each probe's material on the device, made without waiting
on it: the histogram's strided sample of |test - ref| (float32, at most `MAX_HISTOGRAM_ELEMENTS`) and the heat map's
max-pooled cells (at most 128 × 128, float64). `DevicePlots.make_all` turns a batch of them into the JSON in two
copies to the host: the samples' counts and ranges with the maps, then the histograms' counts on the edges the host
draws from those ranges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cp_debug.compare.device_diff import rows_on_host

if TYPE_CHECKING:  # pragma: no cover
    import torch

_CHUNK = 1 << 24  # elements per heat-map pass: bounds its float64 temporary (128 MiB)


class DevicePlots:
    """One probe's plot material on its device (see the module docstring); `histogram` and `heatmap` (None where
    the tensor is not image-like) are the host's `error_histogram` count for count and `error_heatmap` to its 4
    significant digits, made on first use (`make_all` makes several together). `has_heatmap` asks without making."""

    def __init__(self, name: str, errors: "torch.Tensor", every: int, n: int, pooled: "torch.Tensor | None",
                 shape: tuple[int, ...]):
        self.name, self.every, self.n, self.shape = name, every, n, shape
        self._errors, self._pooled = errors, pooled
        self.has_heatmap = pooled is not None
        self._made: tuple[dict, dict | None] | None = None

    @property
    def nbytes(self) -> int:
        """Device bytes held until the plots are made."""
        if self._made is not None:
            return 0
        return sum(t.numel() * t.element_size() for t in (self._errors, self._pooled) if t is not None)

    @property
    def histogram(self) -> dict[str, Any]:
        return self._make()[0]

    @property
    def heatmap(self) -> dict[str, Any] | None:
        return self._make()[1]

    def to_json(self) -> dict:
        histogram, heatmap = self._make()
        return {"histogram": histogram, **({"heatmap": heatmap} if heatmap is not None else {})}

    def _make(self) -> tuple[dict, dict | None]:
        if self._made is None:
            DevicePlots.make_all([self])
        return self._made

    @staticmethod
    def make_all(plots: list["DevicePlots"]) -> None:
        """Make the JSON of each of `plots` not made yet (two copies to the host for all) and let its material go."""
        from cp_debug.compare import plot_data

        todo = [p for p in plots if p._made is None]
        if not todo:  # nothing on a device: torch is not imported for it (2.4 s of a CPU-only LLM bisect)
            return
        firsts = []
        for p in todo:
            firsts += [_head(p._errors)] + ([p._pooled] if p._pooled is not None else [])
        first = iter(rows_on_host(firsts))
        ranges = []
        for p in todo:
            zeros, finite, positive, lo, hi = next(first)
            pooled = next(first) if p._pooled is not None else None
            edges = plot_data.histogram_edges(float(lo), float(hi)) if positive else None
            ranges.append((int(zeros), int(finite), edges, pooled))
        binned = [(p, edges) for p, (_, _, edges, _) in zip(todo, ranges) if edges is not None]
        counts = iter(rows_on_host(_counts(binned)))
        for p, (zeros, finite, edges, pooled) in zip(todo, ranges):
            total = p._errors.numel()
            c = next(counts).astype("int64") if edges is not None else None
            histogram = plot_data.histogram_dict(total, zeros, total - finite, p.every, p.n, edges, c, probe=p.name)
            heatmap = None
            if pooled is not None:
                H, W = p.shape[-2:]
                (h, w), pool = plot_data.heatmap_pool(H, W)
                heatmap = plot_data.heatmap_dict(pooled.reshape(h, w), (H, W), pool, probe=p.name)
            p._made = (histogram, heatmap)
            p._errors = p._pooled = None


def plot_material(items: list[tuple[str, "torch.Tensor", "torch.Tensor"]]) -> list[DevicePlots | None]:
    """The `DevicePlots` of each (name, ref, test) item (None for a pair of different shapes), made on the pair's
    device without waiting on it; the pair's tensors are not held."""
    from cp_debug.compare import plot_data

    out = []
    for name, ref, test in items:
        ref, test = ref.detach(), test.detach()
        if ref.device != test.device:
            ref = ref.to(test.device)
        if ref.shape != test.shape:
            out.append(None)
            continue
        n = ref.numel()
        every = plot_data.histogram_stride(n)
        errors = (test.reshape(-1)[::every].float() - ref.reshape(-1)[::every].float()).abs()  # as the host's _absdiff
        pooled = _heatmap(ref, test) if plot_data.heatmap_shape_ok(tuple(ref.shape)) and n else None
        out.append(DevicePlots(name, errors, every, n, pooled, tuple(ref.shape)))
    return out


def error_plots(name: str, ref: "torch.Tensor", test: "torch.Tensor") -> tuple[dict, dict | None] | None:
    """(histogram, heat map or None) of two torch tensors where they lie (None for different shapes): the host's
    `plot_data.error_histogram` and `error_heatmap` of them (see `DevicePlots`)."""
    plots = plot_material([(name, ref, test)])[0]
    return None if plots is None else (plots.histogram, plots.heatmap)


def _head(d: "torch.Tensor") -> "torch.Tensor":
    """The sample's (exact zeros, finite, positive errors, least and largest positive error) as float64 on its
    device (counts below 2**53 are exact there; the range is of float32 values). Nothing waits on the device."""
    import torch

    finite = torch.isfinite(d)
    pos = finite & (d > 0)
    if d.numel():
        lo = torch.where(pos, d, float("inf")).amin()
        hi = torch.where(pos, d, float("-inf")).amax()
    else:
        lo = hi = torch.zeros((), device=d.device)
    return torch.stack([(finite & (d == 0)).sum().double(), finite.sum().double(), pos.sum().double(), lo.double(),
                        hi.double()])


def _counts(binned: list[tuple[DevicePlots, Any]]) -> list["torch.Tensor"]:
    """Each sample's positive errors binned on its edges (numpy's bins: [e_i, e_i+1), the last one closed; compared
    in float64, as numpy promotes the float32 errors), as float64 counts on the device. The edges go in one
    asynchronous copy (a pageable copy a sample would wait for the device each time)."""
    import numpy as np
    import torch

    if not binned:
        return []
    device = binned[0][0]._errors.device
    edges = torch.from_numpy(np.concatenate([e for _, e in binned]))
    if device.type == "cuda":
        edges = edges.pin_memory().to(device, non_blocking=True)
    out, at = [], 0
    for p, e in binned:
        d = p._errors
        on = edges[at:at + len(e)].to(d.device)
        at += len(e)
        bins = len(e) - 1
        k = (torch.bucketize(d.double(), on, right=True) - 1).clamp_(0, bins - 1)
        pos = torch.isfinite(d) & (d > 0)
        out.append(torch.bincount(torch.where(pos, k, bins), minlength=bins + 1)[:bins].double())  # others: dropped
    return out


def _heatmap(ref: "torch.Tensor", test: "torch.Tensor") -> "torch.Tensor":
    """The max-pooled (h, w) map of an image-like pair, flat, float64, on its device: the max over the batch of the
    channel mean of |test - ref| (non-finite as inf), pooled as `plot_data.heatmap_pool` says."""
    import torch

    from cp_debug.compare import plot_data

    r4 = ref.reshape((1,) * (4 - ref.dim()) + tuple(ref.shape))
    t4 = test.reshape(r4.shape)
    worst = None
    B, C, H, W = r4.shape
    step = max(1, _CHUNK // max(H * W, 1))  # channels per pass
    for b in range(B):
        acc = torch.zeros((H, W), dtype=torch.float64, device=r4.device)
        for lo in range(0, C, step):
            acc += (t4[b, lo:lo + step].float() - r4[b, lo:lo + step].float()).abs().sum(0, dtype=torch.float64)
        acc /= C
        acc = torch.nan_to_num(acc, nan=float("inf"), posinf=float("inf"))
        worst = acc if worst is None else torch.maximum(worst, acc)
    (h, w), (kh, kw) = plot_data.heatmap_pool(H, W)
    padded = torch.nn.functional.pad(worst, (0, w * kw - W, 0, h * kh - H))  # zeros, as the host pads
    return padded.reshape(h, kh, w, kw).amax(dim=(1, 3)).reshape(-1)

"""`TensorDiff` of two torch tensors where they lie (a GPU, say): only the figures reach the host.

The same arithmetic as the host's compiled kernel (`kernels.py`): the operands as float32 (float16 converted
exactly), the maxima (max |diff|, max |diff| / max(|ref|, 1e-12), max |ref|, max |test|) and the tolerance test
taken on float32 values, the sums (|diff|, diff², ref·test, ref², test²) over exact float64 products in float64.
Maxima and counts therefore equal the host's, but for max_rel, whose division the host's kernel takes with
fastmath's reciprocal (within an ulp of float32; the device divides exactly); the sums differ only by float64
summation order (~1e-16 relative).
A pair holding a NaN or an infinity, or of a non-float dtype, is measured on the host (`TensorDiff.from_arrays`),
which keeps the exact NaN/Inf rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.compare.diff import TensorDiff, Tolerance, _Accumulator

if TYPE_CHECKING:  # pragma: no cover
    import torch

_CHUNK = 1 << 24  # elements per pass: bounds the float64 temporaries (128 MiB each)
# the integer type of each float width, to compare bits (torch.equal would take -0.0 for 0.0)
_BITS = {2: "int16", 4: "int32", 8: "int64"}


def is_tensor(value) -> bool:
    """A torch tensor (without importing torch where it is not loaded)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "is_floating_point")


def diff_tensors(name: str, ref: "torch.Tensor", test: "torch.Tensor", tol: Tolerance | None = None) -> TensorDiff:
    """`TensorDiff.from_arrays(name, ref, test, tol)` computed on the tensors' device (`test`'s; `ref` is moved
    there when it lies elsewhere)."""
    import torch

    tol = tol or Tolerance()
    ref, test = ref.detach(), test.detach()
    if ref.device != test.device:
        ref = ref.to(test.device)
    floats = (torch.float32, torch.float16)
    if ref.shape != test.shape or ref.dtype not in floats or test.dtype not in floats:
        return _on_host(name, ref, test, tol)
    r_all, t_all = ref.reshape(-1), test.reshape(-1)
    rows = []
    for lo in range(0, r_all.numel(), _CHUNK):
        r, t = r_all[lo:lo + _CHUNK].float(), t_all[lo:lo + _CHUNK].float()
        if test is ref:
            rows.append(torch.stack([torch.isfinite(r).all().double(), r.abs().max().double()]))
            continue
        d = (t - r).abs()
        # |t - r| is finite only where both are (an overflow of the difference alone sends the pair to the host,
        # which is exact either way): one pass instead of two
        finite = torch.isfinite(d).all()
        a = r.abs()
        beyond = (d > (a * tol.rtol + tol.atol)).sum()
        rel = (d / a.clamp_min(1e-12)).max()
        t_lo, t_hi = torch.aminmax(t)  # max |t| without an |t| temporary
        r64, t64 = r.double(), t.double()
        d64 = (t64 - r64).abs()
        # the float64 sums of exact products as dot products: no product temporaries (on the H100 the sweep's
        # comparisons were a third of its frame time)
        rows.append(torch.stack([
            finite.double(), d64.sum(), torch.dot(d64, d64), torch.dot(r64, t64), torch.dot(r64, r64),
            torch.dot(t64, t64), d.max().double(), rel.double(), a.max().double(),
            torch.maximum(t_hi, -t_lo).double(), beyond.double(),
        ]))
    if not rows:  # empty tensors
        return _on_host(name, ref, test, tol)
    figures = torch.stack(rows).cpu().tolist()  # the one copy to the host
    if not all(row[0] for row in figures):
        return _on_host(name, ref, test, tol)
    if test is ref:
        return TensorDiff.identical(name, tuple(ref.shape), max(row[1] for row in figures))
    acc = _Accumulator(tol)
    acc.n = r_all.numel()
    for _, s_abs, s_sq, dot, rr, tt, mx, mrel, ram, tam, beyond in figures:
        acc.sum_abs += s_abs
        acc.sum_sq += s_sq
        acc.dot += dot
        acc.ref_sq += rr
        acc.test_sq += tt
        acc.max_abs = max(acc.max_abs, mx)
        acc.max_rel = max(acc.max_rel, mrel)
        acc.ref_absmax = max(acc.ref_absmax, ram)
        acc.test_absmax = max(acc.test_absmax, tam)
        acc.beyond += int(beyond)
    return acc.result(TensorDiff, name, tuple(ref.shape), tuple(test.shape))


def identical_diff(name: str, a: "torch.Tensor", b: "torch.Tensor") -> TensorDiff | None:
    """The zero-error `TensorDiff` of two tensors that are bit for bit the same and finite (as the host gives for
    one array), else None: a run repeated exactly needs no comparison."""
    import torch

    a, b = a.detach(), b.detach()
    if a.device != b.device:
        a = a.to(b.device)
    if a.shape != b.shape or a.dtype != b.dtype or not b.is_floating_point() or b.element_size() not in _BITS:
        return None
    bits = getattr(torch, _BITS[b.element_size()])
    if not torch.equal(a.view(bits), b.view(bits)) or not bool(torch.isfinite(b).all()):
        return None
    amax = float(b.abs().max()) if b.numel() else 0.0
    return TensorDiff.identical(name, tuple(b.shape), amax)


def _on_host(name: str, ref: "torch.Tensor", test: "torch.Tensor", tol: Tolerance) -> TensorDiff:
    return TensorDiff.from_arrays(name, host_array(ref), host_array(test), tol)


def host_array(t: "torch.Tensor"):
    """A tensor's values as a numpy array on the host (bfloat16 as float32: numpy has no bfloat16)."""
    import torch

    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float16, torch.float64):
        t = t.float()  # bfloat16: numpy has no such dtype
    return t.cpu().numpy()


def error_plots(name: str, ref: "torch.Tensor", test: "torch.Tensor") -> tuple[dict, dict | None] | None:
    """`plot_data.error_histogram` and, for an image-like tensor, `error_heatmap` of two torch tensors (None for
    different shapes): the histogram's strided sample and the heat map's (H, W) error map are computed where the
    tensors lie and copied to the host, the rest is the host's code. The sample is the host's (every k-th element);
    the map sums float32 |differences| in float64 (as the host's compiled kernel does, in another order), so cells
    agree to their 4 significant digits."""
    import torch

    from cp_debug.compare import plot_data

    ref, test = ref.detach(), test.detach()
    if ref.device != test.device:
        ref = ref.to(test.device)
    if ref.shape != test.shape:
        return None
    n = ref.numel()
    every = plot_data.histogram_stride(n)
    r_s, t_s = host_array(ref.reshape(-1)[::every]), host_array(test.reshape(-1)[::every])
    histogram = plot_data.sampled_histogram(r_s, t_s, every, n, probe=name)
    if not plot_data.heatmap_shape_ok(tuple(ref.shape)) or n == 0:
        return histogram, None
    r4 = ref.reshape((1,) * (4 - ref.dim()) + tuple(ref.shape))
    t4 = test.reshape(r4.shape)
    worst = None
    B, C, H, W = r4.shape
    step = max(1, _CHUNK // max(H * W, 1))  # channels per pass: bounds the float64 temporary
    for b in range(B):
        acc = torch.zeros((H, W), dtype=torch.float64, device=r4.device)
        for lo in range(0, C, step):
            acc += (t4[b, lo:lo + step].float() - r4[b, lo:lo + step].float()).abs().double().sum(0)
        acc /= C
        acc = torch.nan_to_num(acc, nan=float("inf"), posinf=float("inf"))
        worst = acc if worst is None else torch.maximum(worst, acc)
    return histogram, plot_data.pooled_heatmap(worst.cpu().numpy(), probe=name)

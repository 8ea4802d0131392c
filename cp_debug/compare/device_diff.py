"""`TensorDiff` of two torch tensors where they lie (a GPU, say): only the figures reach the host.

The same arithmetic as the host's compiled kernel (`kernels.py`): the operands as float32 (float16 converted
exactly), the maxima (max |diff|, max |diff| / max(|ref|, 1e-12), max |ref|, max |test|) and the tolerance test
taken on float32 values, the sums (|diff|, diff², ref·test, ref², test²) over exact float64 products in float64.
Maxima and counts therefore equal the host's; the sums differ only by float64 summation order (~1e-16 relative).
A pair holding a NaN or an infinity, or of a non-float dtype, is measured on the host (`TensorDiff.from_arrays`),
which keeps the exact NaN/Inf rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cp_debug.compare.diff import TensorDiff, Tolerance, _Accumulator

if TYPE_CHECKING:  # pragma: no cover
    import torch

_CHUNK = 1 << 24  # elements per pass: bounds the float64 temporaries (128 MiB each)


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
        a = r.abs()
        finite = torch.isfinite(r).all() & torch.isfinite(t).all()
        beyond = (d > (a * tol.rtol + tol.atol)).sum()
        rel = (d / a.clamp_min(1e-12)).max()
        r64, t64 = r.double(), t.double()
        d64 = (t64 - r64).abs()
        rows.append(torch.stack([
            finite.double(), d64.sum(), (d64 * d64).sum(), (r64 * t64).sum(), (r64 * r64).sum(), (t64 * t64).sum(),
            d.max().double(), rel.double(), a.max().double(), t.abs().max().double(), beyond.double(),
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


def _on_host(name: str, ref: "torch.Tensor", test: "torch.Tensor", tol: Tolerance) -> TensorDiff:
    return TensorDiff.from_arrays(name, _numpy(ref), _numpy(test), tol)


def _numpy(t: "torch.Tensor"):
    import torch

    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float16, torch.float64):
        t = t.float()  # bfloat16: numpy has no such dtype
    return t.cpu().numpy()

"""`TensorDiff` of two torch tensors where they lie (a GPU, say): only the figures reach the host.

The same arithmetic as the host's compiled kernel (`kernels.py`): the operands as float32 (float16 converted
exactly), the maxima (max |diff|, max |diff| / max(|ref|, 1e-12), max |ref|, max |test|) and the tolerance test
taken on float32 values, the sums (|diff|, diff², ref·test, ref², test²) over exact float64 products in float64.
Maxima and counts therefore equal the host's, but for max_rel, whose division the host's kernel takes with
fastmath's reciprocal (within an ulp of float32; the device divides exactly); the sums differ only by float64
summation order (~1e-16 relative).
A pair holding a NaN or an infinity, or of a non-float dtype, is measured on the host (`TensorDiff.from_arrays`),
which keeps the exact NaN/Inf rules. On a CUDA device, `one_pass=True` takes every figure in one fused pass
(`fused_diff`, Triton) instead of the torch ops, with the same arithmetic.
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


def diff_tensors(name: str, ref: "torch.Tensor", test: "torch.Tensor", tol: Tolerance | None = None, *,
                 one_pass: bool = False) -> TensorDiff:
    """`TensorDiff.from_arrays(name, ref, test, tol)` computed on the tensors' device (`test`'s; `ref` is moved
    there when it lies elsewhere). `one_pass`: on a CUDA device, Triton's fused pass (`fused_diff`) where it runs,
    for a process that compares many tensors (its first kernel costs ~0.8 s)."""
    return diff_many([(name, ref, test, tol)], one_pass=one_pass)[0]


def diff_many(items: list[tuple], *, one_pass: bool = False) -> list[TensorDiff]:
    """`diff_tensors` of each (name, ref, test, tol) item, their figures reaching the host in one copy."""
    import torch

    rows, jobs = [], []
    for name, ref, test, tol in items:
        tol = tol or Tolerance()
        ref, test = ref.detach(), test.detach()
        if ref.device != test.device:
            ref = ref.to(test.device)
        floats = (torch.float32, torch.float16)
        if ref.shape != test.shape or ref.dtype not in floats or test.dtype not in floats or ref.numel() == 0:
            jobs.append((name, ref, test, tol, None))
            continue
        row = None
        if one_pass and test is not ref:
            from cp_debug.compare import fused_diff

            row = fused_diff.figures_on_device(ref, test, tol.rtol, tol.atol)  # bad count first
            if row is not None:
                row = torch.cat([(row[:1] == 0).double(), row[1:]]).reshape(1, -1)
        if row is None:
            row = torch.stack(_torch_rows(ref.reshape(-1), test.reshape(-1), tol, same=test is ref))
        jobs.append((name, ref, test, tol, len(rows)))
        rows.append(row)
    host = [r.tolist() for r in rows_on_host(rows)]
    out = []
    for name, ref, test, tol, k in jobs:
        if k is None:
            out.append(_on_host(name, ref, test, tol))
            continue
        width = 2 if test is ref else 11
        figures = [host[k][j:j + width] for j in range(0, len(host[k]), width)]
        out.append(_from_rows(name, ref, test, tol, figures))
    return out


def _from_rows(name: str, ref: "torch.Tensor", test: "torch.Tensor", tol: Tolerance, figures: list) -> TensorDiff:
    """The `TensorDiff` from the figure rows of a pair's chunks (see `_torch_rows`); a pair holding NaN/Inf is
    measured on the host."""
    if not all(row[0] for row in figures):
        return _on_host(name, ref, test, tol)
    if test is ref:
        return TensorDiff.identical(name, tuple(ref.shape), max(row[1] for row in figures))
    acc = _Accumulator(tol)
    acc.n = ref.numel()
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


def _torch_rows(r_all: "torch.Tensor", t_all: "torch.Tensor", tol: Tolerance, same: bool) -> list:
    """The figures of each `_CHUNK` of the flat tensors as torch ops (where the fused pass does not run): a row
    (finite, max |ref|) of each chunk where `same`, else the 11 figures of `fused_diff`'s row, finiteness as 1/0."""
    import torch

    rows = []
    for lo in range(0, r_all.numel(), _CHUNK):
        r, t = r_all[lo:lo + _CHUNK].float(), t_all[lo:lo + _CHUNK].float()
        if same:
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
        # the float64 sums of exact products as dot products: no product temporaries
        rows.append(torch.stack([
            finite.double(), d64.sum(), torch.dot(d64, d64), torch.dot(r64, t64), torch.dot(r64, r64),
            torch.dot(t64, t64), d.max().double(), rel.double(), a.max().double(),
            torch.maximum(t_hi, -t_lo).double(), beyond.double(),
        ]))
    return rows


def rows_on_host(rows: list["torch.Tensor"]) -> list:
    """Each tensor's values, flat, as a numpy array on the host: copied there together, one copy a device (a copy a
    tensor would wait on the device each time)."""
    import numpy as np
    import torch

    if len({r.device for r in rows}) != 1:
        return [r.reshape(-1).cpu().numpy() for r in rows]
    flat = torch.cat([r.reshape(-1) for r in rows]).cpu().numpy()
    return np.split(flat, np.cumsum([r.numel() for r in rows])[:-1])


def identical_diff(name: str, a: "torch.Tensor", b: "torch.Tensor") -> TensorDiff | None:
    """`identical_many` of one pair."""
    return identical_many([(name, a, b)])[0]


def identical_many(items: list[tuple[str, "torch.Tensor", "torch.Tensor"]]) -> list[TensorDiff | None]:
    """For each (name, a, b) item, the zero-error `TensorDiff` where the two tensors are bit for bit the same and
    finite (as the host gives for one array), else None: a run repeated exactly needs no comparison. The answers
    reach the host in one copy (a device waited for once, not three times a pair)."""
    import torch

    rows, at = [], []
    for _, a, b in items:
        a, b = a.detach(), b.detach()
        if a.device != b.device:
            a = a.to(b.device)
        if a.shape != b.shape or a.dtype != b.dtype or not b.is_floating_point() or b.element_size() not in _BITS:
            at.append(None)
            continue
        bits = getattr(torch, _BITS[b.element_size()])
        amax = b.abs().amax().double() if b.numel() else torch.zeros((), dtype=torch.float64, device=b.device)
        at.append(len(rows))
        rows.append(torch.stack([(a.view(bits) != b.view(bits)).any().double(), torch.isfinite(b).all().double(),
                                 amax]))
    host = [r.tolist() for r in rows_on_host(rows)]
    out = []
    for (name, _, b), k in zip(items, at):
        differs, finite, amax = host[k] if k is not None else (1.0, 0.0, 0.0)
        out.append(TensorDiff.identical(name, tuple(b.shape), amax) if not differs and finite else None)
    return out


def _on_host(name: str, ref: "torch.Tensor", test: "torch.Tensor", tol: Tolerance) -> TensorDiff:
    return TensorDiff.from_arrays(name, host_array(ref), host_array(test), tol)


def host_array(t: "torch.Tensor"):
    """A tensor's values as a numpy array on the host (bfloat16 as float32: numpy has no bfloat16)."""
    import torch

    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float16, torch.float64):
        t = t.float()  # bfloat16: numpy has no such dtype
    return t.cpu().numpy()

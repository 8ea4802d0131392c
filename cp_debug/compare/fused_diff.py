"""`device_diff.diff_tensors`' figures in one pass over two CUDA tensors: a Triton kernel (Triton ships with torch's
CUDA wheels) that reads each element of both once and keeps every figure in registers.

The torch-ops path it replaces launches ~15 kernels a chunk and writes float32 and float64 temporaries of the whole
tensor: 1.6–3.3 ms for a 64×1020×1020 probe on the H100, 39 ms of a 146 ms awml-base sweep frame (16 probes). This
pass takes 0.16–0.25 ms there, with the same arithmetic: operands as float32 (float16 converted exactly); the
maxima, the tolerance test and max_rel on float32 values (the division rounded to nearest, no fused multiply-add, as
torch's separate kernels round); the sums over exact float64 products in float64 (only the summation order differs).
Where Triton is missing or cannot compile here (it builds a small launcher with the system's C compiler on first use),
`figures_on_device` returns None once and for all and the caller keeps its torch ops; `CPDEBUG_FUSED_DIFF=0` does
the same.

Triton's first kernel of a process costs ~0.8 s (it hashes its own library for the cache key, `triton_key`: file
reads and hashing, which leave Python's lock free): callers ask for the pass (`device_diff.diff_tensors(one_pass=True)`
/ `diff_many`) where they compare many tensors, and a bisect on CUDA pays that first kernel on a helper thread while
it loads the model (`device_warm.warm_up_in_background`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

# figures of a row, in order: non-finite count, Σ|d|, Σd², Σr·t, Σr², Σt², max|d|, max rel, max|r|, max|t|, beyond
_SUMS, _MAXES = slice(0, 6), slice(6, 10)
# a program's step and warps: each element of a step keeps five float64 sums and six other figures in registers, so
# a smaller step holds fewer a thread — on the H200 awml-base's 16 block probes of a frame (1.8 GB read) took the
# kernel 1.17 ms at 256 elements and 4 warps against 2.19 ms at 1024 (`benchmarks/fused_diff_speed.py`)
_BLOCK = 256
_WARPS = 4
_PROGRAMS_PER_SM = 8

_kernel = None  # the compiled kernel; False where Triton cannot run (decided once)
_why_not: str | None = None
_first = threading.Lock()  # held through the first launch: a second thread waits for it rather than compiling too
_launched = False


def reason_unavailable() -> str | None:
    """Why `figures_on_device` returns None (None while it has not been asked or runs)."""
    return _why_not


def figures_on_device(ref: "torch.Tensor", test: "torch.Tensor", rtol: float, atol: float) -> "torch.Tensor | None":
    """The 11 figures of `ref` against `test` (same shape, float32/float16, one CUDA device), in the order above, as
    a float64 tensor on their device, not yet copied to the host (several probes' rows reach the host in one copy:
    `device_diff.diff_many`); None where the fused pass cannot run (the caller measures another way)."""
    global _kernel, _why_not, _launched
    if not test.is_cuda or ref.device != test.device:
        return None
    with contextlib.nullcontext() if _launched else _first:  # a second thread waits for the first launch
        kernel = _load()
        if kernel is None:
            return None
        import torch
        import triton

        r, t = ref.reshape(-1).contiguous(), test.reshape(-1).contiguous()
        n = r.numel()
        sms = torch.cuda.get_device_properties(t.device).multi_processor_count
        programs = max(1, min(triton.cdiv(n, _BLOCK), sms * _PROGRAMS_PER_SM))
        per_program = triton.cdiv(triton.cdiv(n, programs), _BLOCK) * _BLOCK
        programs = triton.cdiv(n, per_program)
        parts = torch.empty((programs, 11), dtype=torch.float64, device=t.device)
        try:
            with torch.cuda.device(t.device):
                kernel[(programs,)](r, t, parts, n, per_program, float(rtol), float(atol), BLOCK=_BLOCK,
                                    num_warps=_WARPS, enable_fp_fusion=False)
        except Exception as err:  # noqa: BLE001 - no C compiler, an old driver...: the torch ops measure instead
            _kernel = False
            _why_not = f"Triton could not run its kernel: {type(err).__name__}: {err}".splitlines()[0]
            return None
        _launched = True
    return torch.cat([parts[:, _SUMS].sum(0), parts[:, _MAXES].amax(0), parts[:, 10].sum().reshape(1)])


def warm_up() -> None:
    """Compile the kernel (or read it from Triton's cache) and launch it once for each operand type on small CUDA
    tensors, so that later comparisons do not wait for it; does nothing where Triton or CUDA is missing, and never
    raises (`figures_on_device` decides again, and says why, when it is asked)."""
    try:
        import torch

        from cp_debug import cuda_driver

        cuda_driver.wait()  # a driver started on another thread: waited for without the GIL
        if not torch.cuda.is_available():
            return
        ref = torch.ones(4096, device="cuda")
        for dtype in (torch.float32, torch.float16):
            if figures_on_device(ref, torch.ones(4096, device="cuda", dtype=dtype), 1e-3, 1e-4) is None:
                return
        torch.cuda.current_stream().synchronize()  # this thread's launches (a device-wide wait would wait for the
        # other threads' sessions and runs too: on the H100 host it held the warm-up 1.8 s, to the bisect's end)
    except Exception:  # noqa: BLE001 - a warm-up only: the comparison itself reports what goes wrong
        return


def _load():
    global _kernel, _why_not
    if _kernel is None:
        if os.environ.get("CPDEBUG_FUSED_DIFF", "1") == "0":
            _kernel, _why_not = False, "switched off by CPDEBUG_FUSED_DIFF=0"
        else:
            import torch

            if not torch.cuda.is_available():
                _kernel, _why_not = False, "no CUDA device"
            else:
                try:
                    _kernel = _compile()
                except ImportError as err:
                    _kernel, _why_not = False, f"Triton is not installed ({err})"
    return _kernel or None


def _compile():
    import triton
    import triton.language as tl

    @triton.jit
    def diff_figures(r_ptr, t_ptr, out_ptr, n, per_program, rtol, atol, BLOCK: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)
        start = pid * per_program
        s_abs = tl.zeros([BLOCK], tl.float64)
        s_sq = tl.zeros([BLOCK], tl.float64)
        s_dot = tl.zeros([BLOCK], tl.float64)
        s_rr = tl.zeros([BLOCK], tl.float64)
        s_tt = tl.zeros([BLOCK], tl.float64)
        m_d = tl.zeros([BLOCK], tl.float32)
        m_rel = tl.zeros([BLOCK], tl.float32)
        m_r = tl.zeros([BLOCK], tl.float32)
        m_t = tl.zeros([BLOCK], tl.float32)
        beyond = tl.zeros([BLOCK], tl.int32)  # a lane's counts: at most per_program / BLOCK each
        bad = tl.zeros([BLOCK], tl.int32)
        for off in range(start, start + per_program, BLOCK):
            o = off + tl.arange(0, BLOCK)
            m = o < n
            r = tl.load(r_ptr + o, mask=m, other=0.0).to(tl.float32)
            t = tl.load(t_ptr + o, mask=m, other=0.0).to(tl.float32)
            d = tl.abs(t - r)
            a = tl.abs(r)
            # |t - r| is finite only where both are: NaN (d != d) or beyond float32's largest finite value
            bad += ((d != d) | (d > 3.4028234663852886e38)).to(tl.int32)
            beyond += ((d > a * rtol + atol) & m).to(tl.int32)
            rel = tl.math.div_rn(d, tl.maximum(a, 1e-12))
            r64 = r.to(tl.float64)
            t64 = t.to(tl.float64)
            d64 = tl.abs(t64 - r64)
            s_abs += d64
            s_sq += d64 * d64
            s_dot += r64 * t64
            s_rr += r64 * r64
            s_tt += t64 * t64
            m_d = tl.maximum(m_d, d)
            m_rel = tl.maximum(m_rel, rel)
            m_r = tl.maximum(m_r, a)
            m_t = tl.maximum(m_t, tl.abs(t))
        row = out_ptr + pid * 11
        tl.store(row + 0, tl.sum(bad.to(tl.int64), 0).to(tl.float64))
        tl.store(row + 1, tl.sum(s_abs, 0))
        tl.store(row + 2, tl.sum(s_sq, 0))
        tl.store(row + 3, tl.sum(s_dot, 0))
        tl.store(row + 4, tl.sum(s_rr, 0))
        tl.store(row + 5, tl.sum(s_tt, 0))
        tl.store(row + 6, tl.max(m_d, 0).to(tl.float64))
        tl.store(row + 7, tl.max(m_rel, 0).to(tl.float64))
        tl.store(row + 8, tl.max(m_r, 0).to(tl.float64))
        tl.store(row + 9, tl.max(m_t, 0).to(tl.float64))
        tl.store(row + 10, tl.sum(beyond.to(tl.int64), 0).to(tl.float64))

    return diff_figures

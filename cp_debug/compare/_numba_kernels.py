"""The numba kernels behind `cp_debug.compare.kernels` (which says what they compute); imported only there,
lazily, because importing this module imports numba and compiles (or loads from numba's cache) the kernels.

float16 operands come in as their bits (uint16) and are widened exactly. Where the processor converts half
precision itself (x86 with F16C, AArch64) that is LLVM's `fpext half` — one vcvtph2ps per 8 elements on x86; elsewhere
integer bit arithmetic. Same float32 values either way (tests/compare/test_kernels.py checks all 65,536 patterns),
so the same sums; on the CPU machine (AVX2 EPYC) the diff kernel took 20% less time on a float16 test side and the
heat map 40% less.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload


@intrinsic
def bits(typingctx, x):  # noqa: ARG001 - numba's intrinsic signature
    """float32 → its uint32 bit pattern."""

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], context.get_value_type(types.uint32))

    return types.uint32(types.float32), codegen


@intrinsic
def from_bits(typingctx, x):  # noqa: ARG001
    """uint32 bit pattern → float32."""

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.uint32), codegen


@intrinsic
def half_by_cpu(typingctx, x):  # noqa: ARG001
    """float16 bits (uint16) → float32 by LLVM's `fpext half` (exact): the processor's conversion where it has one."""

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@nb.njit(inline="always")
def half_by_bits(x):
    """float16 bits → float32 by integer arithmetic, exactly: normal, subnormal, inf/NaN."""
    h = np.uint32(x)
    sign = (h & np.uint32(0x8000)) << np.uint32(16)
    em = h & np.uint32(0x7FFF)
    normal = from_bits((em << np.uint32(13)) + np.uint32(0x38000000))
    sub = from_bits((em << np.uint32(13)) | np.uint32(0x38800000)) - np.float32(2.0 ** -14)  # m·2⁻²⁴, exact
    special = from_bits((em << np.uint32(13)) | np.uint32(0x7F800000))
    v = sub if em < np.uint32(0x400) else normal
    v = special if em >= np.uint32(0x7C00) else v
    return from_bits(bits(v) | sign)


def cpu_converts_half() -> bool:
    """Whether the code numba builds here converts float16 in one instruction: AArch64, or x86 with F16C among the
    features numba compiles for (`NUMBA_CPU_FEATURES` where set, else the host's). Elsewhere `fpext half` would be
    a call into a runtime library numba may not link."""
    import platform

    from numba.core import config

    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return True
    if machine not in ("x86_64", "amd64"):
        return False
    if config.CPU_FEATURES is not None:
        return "+f16c" in config.CPU_FEATURES.split(",")
    if config.CPU_NAME is not None:  # a named CPU (portable caches): its features are not the host's
        return False
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("f16c"))


CPU_HALF = cpu_converts_half()


def as_f32(x):
    """An element as float32: float32 itself, or float16 bits (uint16) converted exactly."""


@overload(as_f32)
def _as_f32(x):
    if isinstance(x, types.Float):
        return lambda x: x
    if isinstance(x, types.Integer):
        if CPU_HALF:
            return lambda x: half_by_cpu(x)
        return lambda x: half_by_bits(x)
    return None


@nb.njit(fastmath=True, cache=True)
def part(rs, ts, atol, rtol, o):
    """One part's sums and maxima. The 32-bit quantities stay 32-bit (`& MASK` of two uint32 is typed uint64 by
    numba, and AVX2 has no unsigned 64-bit maximum: three such maxima, and an int64 count, cost the loop a third
    more instructions and spilled its registers): the absolute bits are kept uint32, the count beyond tolerance is
    int32 (a part holds fewer than 2**31 elements, `kernels.diff_parts`), and a NaN/inf anywhere shows in the larger
    of the two absolute maxima. The float64 sums and their vectorised order are as before: the same results, bit for
    bit, in 0.6 of the time on the CPU machine."""
    s_abs = 0.0
    s_sq = 0.0
    dot = 0.0
    rr = 0.0
    tt = 0.0
    mx = np.uint32(0)
    mrel = np.uint32(0)
    ram = np.uint32(0)
    tam = np.uint32(0)
    beyond = np.int32(0)
    at = np.float32(atol)
    rt = np.float32(rtol)
    tiny = np.float32(1e-12)
    mask = np.uint32(0x7FFFFFFF)
    for i in range(rs.size):
        a = as_f32(rs[i])
        b = as_f32(ts[i])
        ab = np.uint32(bits(a) & mask)
        bb = np.uint32(bits(b) & mask)
        d = abs(b - a)
        aa = abs(a)
        a64 = np.float64(a)
        b64 = np.float64(b)
        d64 = abs(b64 - a64)  # exact; `d` (float32, correctly rounded) serves the maxima and the tolerance test
        s_abs += d64
        s_sq += d64 * d64
        dot += a64 * b64
        rr += a64 * a64
        tt += b64 * b64
        mx = max(mx, bits(d))
        ram = max(ram, ab)
        tam = max(tam, bb)
        mrel = max(mrel, bits(d / max(aa, tiny)))
        beyond += np.int32(d > at + rt * aa)
    o[0] = rs.size
    o[1] = s_abs
    o[2] = s_sq
    o[3] = dot
    o[4] = rr
    o[5] = tt
    o[6] = mx
    o[7] = mrel
    o[8] = ram
    o[9] = tam
    o[10] = beyond
    o[11] = max(ram, tam)


@nb.njit(inline="always")
def diff_row(r, t, atol, rtol, parts, chunk, k, out):
    """Row k of `diff`: part k % parts of chunk k // parts."""
    n = r.size
    base = (k // parts) * chunk
    m = min(n, base + chunk) - base
    step = (m + parts - 1) // parts
    lo = base + min(m, (k % parts) * step)
    hi = min(base + m, lo + step)
    part(r[lo:hi], t[lo:hi], atol, rtol, out[k])


@nb.njit(parallel=True, cache=True)
def diff(r, t, atol, rtol, parts, chunk):
    """Row c * parts + p: part p of chunk c (chunks of `chunk` elements, the last one shorter, each cut into `parts`
    equal ranges), all in one parallel loop: one call for a whole tensor, its rows the same as a call per chunk."""
    rows = ((r.size + chunk - 1) // chunk) * parts
    out = np.zeros((rows, 12))
    for k in nb.prange(rows):
        diff_row(r, t, atol, rtol, parts, chunk, k, out)
    return out


@nb.njit(cache=True)
def diff_serial(r, t, atol, rtol, parts, chunk):
    """`diff`'s rows on the calling thread, the same parts: the same results, without a parallel launch (~0.2 ms)."""
    rows = ((r.size + chunk - 1) // chunk) * parts
    out = np.zeros((rows, 12))
    for k in range(rows):
        diff_row(r, t, atol, rtol, parts, chunk, k, out)
    return out


@nb.njit(fastmath={"reassoc", "contract", "nsz", "arcp"}, cache=True)
def heat_rows(r, t, acc, lo, hi):
    """acc[h] += |t[c, h] - r[c, h]| for rows lo..hi, channel after channel. The whole arrays come in, not slices:
    a slice `r[:, lo:hi]` is typed with any layout, and its rows were not vectorised (3 times the CPU time)."""
    for c in range(r.shape[0]):
        for h in range(lo, hi):
            rr = r[c, h]
            tt = t[c, h]
            ah = acc[h]
            for w in range(rr.size):
                ah[w] += np.float64(abs(as_f32(tt[w]) - as_f32(rr[w])))


@nb.njit(parallel=True, cache=True)
def heat(r, t):
    H, W = r.shape[1], r.shape[2]
    acc = np.zeros((H, W))
    rows = 8
    for k in nb.prange((H + rows - 1) // rows):
        lo = k * rows
        heat_rows(r, t, acc, lo, min(H, lo + rows))
    return acc


@nb.njit(cache=True)
def heat_serial(r, t):
    """`heat` on the calling thread: each row summed channel after channel as there, the same values."""
    H, W = r.shape[1], r.shape[2]
    acc = np.zeros((H, W))
    heat_rows(r, t, acc, 0, H)
    return acc

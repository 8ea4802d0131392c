"""The numba kernels behind `cp_debug.compare.kernels` (which says what they compute); imported only there,
lazily, because importing this module imports numba and compiles (or loads from numba's cache) the kernels."""

from __future__ import annotations

import numba as nb
import numpy as np
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


def as_f32(x):
    """An element as float32: float32 itself, or float16 bits (uint16) converted exactly."""


@overload(as_f32)
def _as_f32(x):
    if isinstance(x, types.Float):
        return lambda x: x
    if isinstance(x, types.Integer):  # float16 bits, exactly: normal, subnormal, inf/NaN
        def half(x):
            h = np.uint32(x)
            sign = (h & np.uint32(0x8000)) << np.uint32(16)
            em = h & np.uint32(0x7FFF)
            normal = from_bits((em << np.uint32(13)) + np.uint32(0x38000000))
            sub = from_bits((em << np.uint32(13)) | np.uint32(0x38800000)) - np.float32(2.0 ** -14)  # m·2⁻²⁴, exact
            special = from_bits((em << np.uint32(13)) | np.uint32(0x7F800000))
            v = sub if em < np.uint32(0x400) else normal
            v = special if em >= np.uint32(0x7C00) else v
            return from_bits(bits(v) | sign)
        return half
    return None


@nb.njit(fastmath=True, cache=True)
def part(rs, ts, atol, rtol, o):
    s_abs = 0.0
    s_sq = 0.0
    dot = 0.0
    rr = 0.0
    tt = 0.0
    mx = np.uint32(0)
    mrel = np.uint32(0)
    ram = np.uint32(0)
    tam = np.uint32(0)
    odd = np.uint32(0)
    beyond = 0
    at = np.float32(atol)
    rt = np.float32(rtol)
    tiny = np.float32(1e-12)
    for i in range(rs.size):
        a = as_f32(rs[i])
        b = as_f32(ts[i])
        ab = bits(a) & np.uint32(0x7FFFFFFF)
        bb = bits(b) & np.uint32(0x7FFFFFFF)
        odd = max(odd, max(ab, bb))
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
        beyond += d > at + rt * aa
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
    o[11] = odd


@nb.njit(parallel=True, cache=True)
def diff(r, t, atol, rtol, parts):
    n = r.size
    out = np.zeros((parts, 12))
    step = (n + parts - 1) // parts
    for p in nb.prange(parts):
        lo = min(n, p * step)
        hi = min(n, lo + step)
        part(r[lo:hi], t[lo:hi], atol, rtol, out[p])
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

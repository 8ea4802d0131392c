"""Float32 values rounded to the nearest float16 value (kept in float32), as an FP16 graph stores a tensor.

`x.astype(np.float16).astype(np.float32)` does the same in two conversions and two full-size allocations; on a
segment's activations this was the largest single cost of an FP16 lockstep bisect after the comparisons. Here
the rounding is integer arithmetic on the float32 bits, in place, block by block: round-to-nearest-even on the
mantissa for float16's normal range, a scaled `rint` for its subnormals, ±inf past float16's largest value,
NaN and inf left as they are. Bit-identical to the two conversions (tests/precision/test_rounding.py).
"""

from __future__ import annotations

import numpy as np

_FP16_MIN_NORMAL = np.float32(2.0 ** -14)
_FP16_OVERFLOW = np.float32(65504.0)
_BLOCK = 1 << 16


def round_to_fp16_(a: np.ndarray) -> np.ndarray:
    """Round a float32 array to float16's grid in place (C-contiguous); returns it."""
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        raise TypeError("round_to_fp16_ needs a C-contiguous float32 array")
    flat = a.reshape(-1)
    bits = flat.view(np.uint32)
    n = min(_BLOCK, flat.size)
    mag = np.empty(n, np.float32)
    tmp = np.empty(n, np.uint32)
    for lo in range(0, flat.size, _BLOCK):
        x, b = flat[lo:lo + _BLOCK], bits[lo:lo + _BLOCK]
        m, t = mag[:x.size], tmp[:x.size]
        np.abs(x, out=m)
        odd = np.flatnonzero(~np.isfinite(m))  # NaN / inf: left as they are (rare: indices, not masks)
        kept = x[odd]
        sub = np.flatnonzero((m < _FP16_MIN_NORMAL) & (m > 0))  # float16 subnormals (zeros round to zero below)
        small = x[sub]
        # add half an ulp of float16 (0x0FFF + the kept mantissa's lowest bit: ties to even), clear the 13 dropped
        # bits; a carry into the exponent is the right rounding up to the next power of two
        np.right_shift(b, 13, out=t)
        np.bitwise_and(t, 1, out=t)
        t += 0x0FFF
        t += b
        np.bitwise_and(t, np.uint32(0xFFFFE000), out=b)
        x[odd] = kept
        if sub.size:  # multiples of 2**-24, ties to even
            x[sub] = np.rint(small * np.float32(2.0 ** 24)) * np.float32(2.0 ** -24)
        np.abs(x, out=m)
        over = np.flatnonzero(m > _FP16_OVERFLOW)
        if over.size:
            x[over] = np.copysign(np.float32(np.inf), x[over])
    return a


def as_fp16_stored(a: np.ndarray, *, copy: bool) -> np.ndarray:
    """`a` (float32) on float16's grid: rounded in place when copy is False, else into a new array."""
    out = np.array(a, dtype=np.float32, order="C", copy=True) if copy else np.ascontiguousarray(a)
    return round_to_fp16_(out)

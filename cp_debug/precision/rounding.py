"""Float32 values rounded to the nearest float16 value (kept in float32), as an FP16 graph stores a tensor.

`x.astype(np.float16).astype(np.float32)` does the same, but numpy converts in software (6–10 ns an element)
and allocates two full-size arrays. Here the array is rounded in place, block by block, through
`cp_debug.half` (ONNX Runtime's Cast: round-to-nearest-even, ±inf past float16's largest value, NaN kept):
bit-identical to the two conversions (tests/precision/test_rounding.py), about 20 times faster.
"""

from __future__ import annotations

import numpy as np

from cp_debug.half import to_fp16, to_fp32

_BLOCK = 1 << 20


def round_to_fp16_(a: np.ndarray) -> np.ndarray:
    """Round a float32 array to float16's grid in place (C-contiguous); returns it."""
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        raise TypeError("round_to_fp16_ needs a C-contiguous float32 array")
    flat = a.reshape(-1)
    half = np.empty(min(_BLOCK, flat.size), np.float16)
    for lo in range(0, flat.size, _BLOCK):
        x = flat[lo:lo + _BLOCK]
        h = half[:x.size]
        to_fp16(x, out=h)
        to_fp32(h, out=x)
    return a


def as_fp16_stored(a: np.ndarray, *, copy: bool) -> np.ndarray:
    """`a` (float32) on float16's grid: rounded in place when copy is False, else into a new array."""
    out = np.array(a, dtype=np.float32, order="C", copy=True) if copy else np.ascontiguousarray(a)
    return round_to_fp16_(out)

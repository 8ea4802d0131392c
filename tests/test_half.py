"""cp_debug.half's ONNX Runtime casts are bit-identical to numpy's float32 <-> float16 conversions."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.half import to_fp16, to_fp32


def _floats() -> np.ndarray:
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal(5000).astype(np.float32) * np.float32(s) for s in (1e-8, 1e-5, 1.0, 3e4, 1e5)]
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519, 65520, -65520, 2.0 ** -24, 2.0 ** -25,
                         3 * 2.0 ** -26, 2.0 ** -14], np.float32)
    return np.concatenate([specials] + parts)


def test_to_fp16_matches_astype_bit_for_bit_and_keeps_the_shape():
    x = _floats()[:25012].reshape(-1, 2)[:, ::-1]  # not contiguous
    with np.errstate(over="ignore"):
        want = x.astype(np.float16)
    got = to_fp16(x)
    assert got.shape == x.shape and got.dtype == np.float16
    same = (got.view(np.uint16) == want.view(np.uint16)) | (np.isnan(got) & np.isnan(want))
    assert same.all()


def test_to_fp32_is_exact_for_every_float16_and_writes_into_out():
    every = np.arange(65536, dtype=np.uint16).view(np.float16)
    out = np.full(every.size, 7.0, np.float32)
    got = to_fp32(every, out=out)
    assert got.base is out or got is out
    want = every.astype(np.float32)
    assert np.array_equal(got[~np.isnan(want)], want[~np.isnan(want)]) and np.isnan(got[np.isnan(want)]).all()


def test_wrong_dtypes_and_sizes_are_refused_and_empty_arrays_pass():
    with pytest.raises(TypeError):
        to_fp16(np.zeros(3, np.float64))
    with pytest.raises(TypeError):
        to_fp32(np.zeros(3, np.float16), out=np.zeros(4, np.float32))
    assert to_fp16(np.zeros((0, 3), np.float32)).shape == (0, 3)

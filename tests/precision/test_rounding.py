"""The in-place float16 rounding that lockstep applies at every cut is bit-identical to numpy's two conversions."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.precision.rounding import as_fp16_stored, round_to_fp16_


def _cases() -> np.ndarray:
    rng = np.random.default_rng(0)
    scales = [1e-9, 1e-7, 3e-6, 6e-5, 1e-3, 1.0, 300.0, 6e4, 7e4, 1e6]
    parts = [rng.standard_normal(20000).astype(np.float32) * np.float32(s) for s in scales]
    grid = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    grid = grid[np.isfinite(grid)]
    ties = ((grid[:-1].astype(np.float64) + grid[1:]) / 2).astype(np.float32)  # halfway: ties to even
    near = [np.nextafter(grid, np.float32(np.inf)), np.nextafter(grid, np.float32(-np.inf))]
    every = np.arange(0, 2 ** 32, 104729, dtype=np.uint64).astype(np.uint32).view(np.float32)  # all exponents
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519, 65520, 65535, -65520, 2.0 ** -24,
                         2.0 ** -25, 3 * 2.0 ** -26, 2.0 ** -14], np.float32)
    return np.concatenate(parts + [grid, ties, *near, every, specials]).astype(np.float32)


def test_bit_identical_to_two_conversions():
    x = _cases()
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(np.float16).astype(np.float32)
    got = round_to_fp16_(x.copy())
    same = (want.view(np.uint32) == got.view(np.uint32)) | (np.isnan(want) & np.isnan(got))
    assert same.all(), x[~same][:5]


def test_copy_leaves_the_source_alone_and_in_place_rounds_it():
    x = np.array([[0.1, 70000.0], [1e-6, -3.14159]], np.float32)
    kept = x.copy()
    y = as_fp16_stored(x, copy=True)
    assert np.array_equal(x, kept) and y is not x
    with np.errstate(over="ignore"):  # 70000 overflows to inf in float16, on purpose
        assert np.array_equal(y, kept.astype(np.float16).astype(np.float32))
    z = as_fp16_stored(x, copy=False)
    assert z is x and np.array_equal(x, y)
    with pytest.raises(TypeError):
        round_to_fp16_(np.zeros(3, np.float64))

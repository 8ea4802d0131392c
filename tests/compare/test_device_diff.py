"""`diff_tensors` (the comparison where the tensors lie) gives `TensorDiff.from_arrays`'s figures: maxima and counts
equal, sums to float64 rounding. Run on torch CPU tensors: the same code a GPU runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cp_debug.compare.device_diff import diff_tensors
from cp_debug.compare.diff import TensorDiff, default_tolerance

EXACT = ("ref_shape", "test_shape", "max_abs", "ref_absmax", "test_absmax", "share_beyond", "nan", "inf", "status")
SUMS = ("mean_abs", "rmse", "rel_rmse", "cosine", "snr_db")


def _check(ref: np.ndarray, test: np.ndarray, tol) -> TensorDiff:
    host = TensorDiff.from_arrays("t", ref, test, tol)
    dev = diff_tensors("t", torch.from_numpy(ref), torch.from_numpy(test), tol)
    for f in EXACT:
        assert getattr(dev, f) == getattr(host, f), f
    for f in SUMS:
        a, b = getattr(dev, f), getattr(host, f)
        assert a == b or math.isclose(a, b, rel_tol=1e-12) or (math.isnan(a) and math.isnan(b)), (f, a, b)
    # |diff| / |ref| in float32: the compiled kernel may divide through a reciprocal (fastmath), 1 ulp apart
    assert math.isclose(dev.max_rel, host.max_rel, rel_tol=2.5e-7), (dev.max_rel, host.max_rel)
    return dev


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_device_figures_equal_the_host_figures(dtype):
    rs = np.random.RandomState(0)
    ref = (rs.randn(3, 64, 50) * 3).astype(dtype)
    test = (ref.astype(np.float32) + rs.randn(*ref.shape).astype(np.float32) * 1e-2).astype(dtype)
    d = _check(ref, test, default_tolerance("fp16"))
    assert d.status in ("ok", "diverged") and 0 < d.max_abs < 0.1
    _check(ref, ref.copy(), default_tolerance("fp32"))  # equal values, two arrays: zero error


def test_nan_shape_mismatch_and_identical_follow_the_host():
    ref = np.arange(12, dtype=np.float32).reshape(3, 4)
    bad = ref.copy()
    bad[1, 2] = np.nan
    d = _check(ref, bad, default_tolerance("fp32"))
    assert d.status == "nan" and d.nan == 1
    mismatch = diff_tensors("t", torch.from_numpy(ref), torch.zeros(4, 3))
    assert mismatch.status == "shape_mismatch"
    t = torch.from_numpy(ref)
    same = diff_tensors("t", t, t)
    assert same.status == "ok" and same.max_abs == 0 and same.ref_absmax == 11.0


def test_finite_values_whose_difference_overflows_follow_the_host():
    """Finite operands whose float32 difference overflows (the device's finiteness test reads the difference) are
    measured on the host, with its figures."""
    ref = np.array([[-3e38, 1.0], [2.0, 3.0]], dtype=np.float32)
    test = np.array([[3e38, 1.0], [2.0, 3.5]], dtype=np.float32)
    d = _check(ref, test, default_tolerance("fp32"))
    assert d.status != "ok" and d.ref_absmax == pytest.approx(3e38)

"""TensorDiff and the heat map over threads: the same numbers as one thread (up to float64 summation order)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.plot_data import error_heatmap


@pytest.mark.parametrize("plant_inf", [False, True])
def test_threads_give_the_serial_numbers(monkeypatch, plant_inf):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(1, 8, 512, 520)).astype(np.float32)  # above the parallel threshold
    test = ref + rng.normal(size=ref.shape).astype(np.float32) * 1e-3
    test[0, 3, 100, 7] += 0.5  # the largest error lives in one part only
    if plant_inf:
        test[0, 7, 500, 500] = np.inf
    out = {}
    for threads in ("1", "4"):
        monkeypatch.setenv("CPDEBUG_COMPARE_THREADS", threads)
        out[threads] = (TensorDiff.from_arrays("x", ref, test), error_heatmap(ref, test))
    (d1, h1), (d4, h4) = out["1"], out["4"]
    for f in ("max_abs", "max_rel", "ref_absmax", "test_absmax", "nan", "inf", "status", "share_beyond"):
        assert getattr(d1, f) == getattr(d4, f), f
    for f in ("mean_abs", "rmse", "rel_rmse", "cosine", "snr_db"):
        a, b = getattr(d1, f), getattr(d4, f)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=0), f
    assert d4.max_abs == (math.inf if plant_inf else pytest.approx(0.5, rel=0.02))
    assert h1["data"] == h4["data"] and h1["nonfinite_cells"] == h4["nonfinite_cells"] == int(plant_inf)

"""Calibrators on known data: max exact, percentile where numpy puts it, MSE/entropy clip heavy tails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cp_debug.quant.calibrate import HistogramCalibrator, MaxCalibrator
from cp_debug.quant.quantizers import fake_quant


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(200_000, generator=g)
    x[:20] = 40.0  # a few large outliers
    return x


def test_max_per_channel_keeps_dims():
    w = torch.randn(8, 4, 3, 3)
    w[5, 1, 0, 0] = 9.0
    cal = MaxCalibrator(axis=0)
    cal.collect(w)
    amax = cal.compute_amax()
    assert amax.shape == (8, 1, 1, 1)
    torch.testing.assert_close(amax.reshape(-1), w.abs().amax(dim=(1, 2, 3)))
    t = MaxCalibrator(axis=1)
    t.collect(torch.randn(4, 6, 2, 2))
    assert t.compute_amax().shape == (1, 6, 1, 1)


def test_histogram_grows_and_percentile_matches_numpy():
    x = _data()
    cal = HistogramCalibrator()
    cal.collect(x[:100_000] * 0.5)  # a smaller range first: the histogram must extend
    cal.collect(x[100_000:])
    cal.collect(x[:100_000])
    allx = torch.cat([x[:100_000] * 0.5, x[100_000:], x[:100_000]]).abs().numpy()
    assert cal.max == pytest.approx(float(allx.max()))
    assert float(cal.hist.sum()) == allx.size
    p = float(cal.compute_amax("percentile", 99.0))
    assert p == pytest.approx(np.percentile(allx, 99.0), rel=0.02)
    assert float(cal.compute_amax("max")) == pytest.approx(40.0)


def test_mse_minimises_the_quantization_error():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(1))
    x[0] = 60.0  # one outlier: clipping it partly costs less than the coarse step it forces on the rest
    cal = HistogramCalibrator()
    cal.collect(x)
    amax = cal.compute_amax("mse")
    err = lambda a: float(((fake_quant(x, torch.as_tensor(a), None) - x) ** 2).mean())  # noqa: E731
    assert 2.0 < float(amax) < 55.0  # the optimum is near 29.5 (clip cost (60 - a)^2 = n a^2 / (12 * 127^2))
    assert err(amax) < err(60.0)
    assert err(amax) <= 1.02 * min(err(a) for a in np.linspace(2.5, 60, 200))  # near the true optimum


def test_entropy_clips_a_heavy_tail():
    x = _data(1)
    cal = HistogramCalibrator()
    cal.collect(x)
    amax = float(cal.compute_amax("entropy"))
    assert 2.0 < amax < 20.0  # inside neither the Gaussian bulk nor the outliers' 40

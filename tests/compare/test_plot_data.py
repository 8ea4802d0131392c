from __future__ import annotations

import json

import numpy as np
import pytest

from cp_debug.errors import BadInputError
from cp_debug.compare.plot_data import error_heatmap, error_histogram


def test_histogram_counts_every_element():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(2, 3, 40, 50))
    test = ref + rng.normal(size=ref.shape) * 1e-3
    test[0, 0, 0, :5] = ref[0, 0, 0, :5]  # exact
    test[0, 0, 1, :3] = np.inf
    h = error_histogram(ref, test, bins=30, probe="p")
    assert len(h["edges"]) == 31 and len(h["counts"]) == 30
    assert sum(h["counts"]) + h["zeros"] + h["nonfinite"] == h["total"] == ref.size
    assert h["zeros"] == 5 and h["nonfinite"] == 3 and h["probe"] == "p"
    e = np.array(h["edges"])
    assert np.all(np.diff(e) > 0)
    ratios = e[1:] / e[:-1]
    assert np.allclose(ratios, ratios[0], rtol=1e-3)  # log-spaced
    json.dumps(h, allow_nan=False)


def test_histogram_of_identical_tensors():
    a = np.ones((3, 3))
    h = error_histogram(a, a)
    assert h["edges"] == [] and h["zeros"] == 9


def test_heatmap_finds_the_region_and_downsamples():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(1, 8, 300, 200))
    test = ref + 1e-6
    test[0, :, 100:120, 150:160] += 5.0
    test[0, 3, 250, 10] = np.nan
    hm = error_heatmap(ref, test, max_side=64, probe="bev")
    h, w = hm["shape"]
    assert h <= 64 and w <= 64 and hm["source_shape"] == [300, 200] and hm["channel_reduce"] == "mean"
    assert len(hm["data"]) == h and all(len(r) == w for r in hm["data"])
    kh, kw = hm["pool"]
    a = np.array([[float(v) for v in r] for r in hm["data"]])
    assert np.isinf(a).sum() == hm["nonfinite_cells"] == 1
    assert a[250 // kh, 10 // kw] == np.inf
    finite = np.where(np.isfinite(a), a, 0)
    i, j = np.unravel_index(np.argmax(finite), a.shape)
    assert 100 // kh <= i <= 119 // kh and 150 // kw <= j <= 159 // kw
    json.dumps(hm, allow_nan=False)


def test_heatmap_takes_3d_and_2d_and_refuses_others():
    assert error_heatmap(np.zeros((4, 10, 12)), np.ones((4, 10, 12)))["shape"] == [10, 12]
    assert error_heatmap(np.zeros((10, 12)), np.ones((10, 12)))["data"][0][0] == 1.0
    with pytest.raises(BadInputError, match="shape"):
        error_heatmap(np.zeros(5), np.zeros(5))
    with pytest.raises(BadInputError, match="shapes differ"):
        error_heatmap(np.zeros((2, 3)), np.zeros((3, 2)))


def test_histogram_samples_large_tensors_and_says_so():
    ref = np.zeros(10_000, np.float32)
    test = np.zeros(10_000, np.float32)
    test[::2] = 1e-3  # half the elements differ; a stride-4 sample sees only differing ones
    h = error_histogram(ref, test, max_elements=2_500)
    assert h["every"] == 4 and h["source_total"] == 10_000 and h["total"] == 2_500
    assert sum(h["counts"]) == 2_500 and h["zeros"] == 0
    full = error_histogram(ref, test)
    assert full["every"] == 1 and "source_total" not in full and full["zeros"] == 5_000


def test_heatmap_of_a_batch_takes_the_worst_sample_and_the_channel_mean():
    ref = np.zeros((2, 4, 8, 8), np.float32)
    test = ref.copy()
    test[1, 0, 3, 5] = 8.0  # sample 1, one channel of four: channel mean 2.0
    test[0, :, 0, 0] = 1.0  # sample 0, all channels: mean 1.0
    hm = error_heatmap(ref, test)
    a = np.array(hm["data"], dtype=float)
    assert a[3, 5] == 2.0 and a[0, 0] == 1.0 and a.sum() == 3.0


def test_heatmap_cells_round_to_four_significant_digits_as_formatting_does():
    from cp_debug.compare.plot_data import _significant

    rng = np.random.default_rng(4)
    a = np.exp(rng.uniform(-25, 12, size=20_000))
    a[:3] = [0.0, np.inf, 1.0]
    got = _significant(a, 4)
    want = np.array([float(f"{v:.4g}") for v in a])
    assert np.isinf(got[1]) and got[0] == 0.0 and got[2] == 1.0
    # equal floats for every finite cell but where the decimal rounding sits on a tie (a last-bit difference)
    close = got == want
    assert close.mean() > 0.999 and np.allclose(got, want, rtol=1e-3, atol=0)

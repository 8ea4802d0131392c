"""`diff_tensors` (the comparison where the tensors lie) gives `TensorDiff.from_arrays`'s figures: maxima and counts
equal, sums to float64 rounding. Run on torch CPU tensors: the same code a GPU runs."""

from __future__ import annotations

import math
import weakref

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


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                      reason="needs a CUDA device")])


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(3, 64, 50), (1, 5, 1021, 1019)])
def test_the_fused_pass_on_the_gpu_gives_the_host_figures(device, dtype, shape):
    """On a CUDA device `diff_tensors` reads both tensors once (`fused_diff`, Triton): the host's figures, over one
    program and over many (the second shape spans more programs than the H100's 132 SMs × 8, with a ragged end)."""
    from cp_debug.compare import fused_diff

    rs = np.random.RandomState(1)
    ref = (rs.randn(*shape) * 3).astype(dtype)
    test = (ref.astype(np.float32) + rs.randn(*shape).astype(np.float32) * 1e-2).astype(dtype)
    ref[0, 0, 0] = 0.0  # max_rel's floor of 1e-12 under a zero reference
    tol = default_tolerance("fp16")
    fused = fused_diff.figures_on_device(torch.from_numpy(ref).to(device), torch.from_numpy(test).to(device),
                                         tol.rtol, tol.atol)
    assert fused is not None, fused_diff.reason_unavailable()
    fused = fused.cpu().tolist()
    assert fused[0] == 0 and fused[10] > 0  # finite; some elements beyond tolerance
    host = TensorDiff.from_arrays("t", ref, test, tol)
    dev = diff_tensors("t", torch.from_numpy(ref).to(device), torch.from_numpy(test).to(device), tol, one_pass=True)
    for f in EXACT:
        assert getattr(dev, f) == getattr(host, f), f
    for f in SUMS:
        assert math.isclose(getattr(dev, f), getattr(host, f), rel_tol=1e-12), f
    assert math.isclose(dev.max_rel, host.max_rel, rel_tol=2.5e-7)


@pytest.mark.parametrize("device", [CUDA])
def test_the_fused_pass_sends_non_finite_and_overflowing_pairs_to_the_host(device):
    ref = np.array([[-3e38, 1.0], [2.0, 3.0]], dtype=np.float32)
    test = np.array([[3e38, 1.0], [2.0, 3.5]], dtype=np.float32)
    host = TensorDiff.from_arrays("t", ref, test, default_tolerance("fp32"))
    dev = diff_tensors("t", torch.from_numpy(ref).to(device), torch.from_numpy(test).to(device), one_pass=True)
    assert (dev.status, dev.max_abs, dev.ref_absmax) == (host.status, host.max_abs, host.ref_absmax)
    bad = ref.copy()
    bad[1, 0] = np.inf
    dev = diff_tensors("t", torch.from_numpy(ref).to(device), torch.from_numpy(bad).to(device), one_pass=True)
    assert dev.status == "inf" and dev.inf == 1 and dev.nan == 0


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_error_plots_where_the_tensors_lie_are_the_host_plots(device, dtype):
    """`error_plots` counts and pools on the tensors' device: the host's histogram count for count (a sampled
    tensor, with a NaN and an exact zero error in the sample), the host's heat map cell for cell (4 digits)."""
    from cp_debug.compare.device_plots import error_plots
    from cp_debug.compare.plot_data import error_heatmap, error_histogram

    rs = np.random.RandomState(2)
    ref = (rs.randn(1, 6, 300, 301) * 3).astype(dtype)
    test = (ref.astype(np.float32) + rs.randn(*ref.shape).astype(np.float32) * 1e-2).astype(dtype)
    test.reshape(-1)[0] = ref.reshape(-1)[0]
    test.reshape(-1)[9 * 7] = np.nan  # in the sample (every 9th element of 542k)
    hist, heat = error_plots("p", torch.from_numpy(ref).to(device), torch.from_numpy(test).to(device))
    want = error_histogram(ref, test, probe="p")
    assert hist == want and want["every"] == 9 and want["zeros"] >= 1 and want["nonfinite"] == 1
    host = error_heatmap(ref, test, probe="p")
    assert {k: v for k, v in heat.items() if k != "data"} == {k: v for k, v in host.items() if k != "data"}
    assert host["shape"] == [100, 101] and host["nonfinite_cells"] == 1
    flat = [(a, b) for ra, rb in zip(heat["data"], host["data"]) for a, b in zip(ra, rb)]
    assert all(a == b or (a != "inf" and b != "inf" and math.isclose(a, b, rel_tol=1e-3)) for a, b in flat)
    same = error_plots("p", torch.from_numpy(ref).to(device), torch.from_numpy(ref).to(device))
    assert same[0] == error_histogram(ref, ref, probe="p")


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_plots_made_together_from_device_material_are_each_pairs_own(device):
    """`plot_material` leaves each pair's material on the device; `DevicePlots.make_all` (two copies to the host
    for the batch) gives each pair the plots it gives alone, and the host's: whatever lies beside it (an identical
    pair, a NaN, no positive error, a shape mismatch, a 1-D tensor without heat map, an empty tensor, fp16 against
    fp32). The material is let go once made, and the tensors compared are not held."""
    from cp_debug.compare.device_plots import DevicePlots, error_plots, plot_material
    from cp_debug.compare.plot_data import error_heatmap, error_histogram

    rs = np.random.RandomState(5)
    a = torch.from_numpy((rs.randn(2, 5, 40, 33) * 2).astype(np.float32)).to(device)
    b = a + 1e-3 * torch.from_numpy(rs.randn(2, 5, 40, 33).astype(np.float32)).to(device)
    nan = b.clone()
    nan[1, 2, 3, 4] = float("nan")
    flat = torch.from_numpy(rs.randn(300_000).astype(np.float32)).to(device)  # sampled: every 5th element
    items = [("b", a, b), ("same", a, a.clone()), ("nan", a, nan), ("shape", a, a[:1]), ("flat", flat, flat * 1.01),
             ("empty", a[:0], b[:0]), ("half", a, b.half())]
    material = plot_material(items)
    assert material[3] is None and not material[4].has_heatmap and material[0].has_heatmap
    waiting = [m for m in material if m is not None]
    assert all(m.nbytes > 0 for m in waiting[:-2])
    big = torch.ones(1, 3, 800, 700, device=device)  # sampled and pooled: no view of it may outlive the call
    gone = weakref.ref(big)
    held = plot_material([("big", big, big * 2)])
    del big
    assert gone() is None and held[0].has_heatmap
    DevicePlots.make_all(waiting)
    assert all(m.nbytes == 0 for m in waiting)
    many = [None if m is None else (m.histogram, m.heatmap) for m in material]
    assert many[1][0]["counts"] == [] and many[1][0]["zeros"] == many[1][0]["total"]
    assert many[2][0]["nonfinite"] == 1 and many[2][1]["nonfinite_cells"] == 1
    assert many[4][0]["every"] == 5 and many[5][0]["total"] == 0
    for item, got in zip(items, many):
        assert got == error_plots(*item), item[0]
        if got is None:
            continue
        r, t = item[1].cpu().numpy(), item[2].cpu().numpy()
        assert got[0] == error_histogram(r, t, probe=item[0]), item[0]
        if got[1] is not None:
            host = error_heatmap(r, t, probe=item[0])
            assert {k: v for k, v in got[1].items() if k != "data"} == {k: v for k, v in host.items() if k != "data"}


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_the_comparisons_warm_up_runs_its_passes(device):
    """`device_warm.warm_up` swallows what fails (a warm-up only): its passes run here without that shield, so a
    warm-up that cannot run (a renamed function it calls, say) fails this test instead of doing nothing."""
    from cp_debug.compare.device_warm import warm_up_on

    warm_up_on(torch.device(device))


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_identical_many_finds_the_pairs_equal_bit_for_bit(device):
    """One copy for the batch: a pair equal bit for bit and finite gets the zero-error diff with its |max|; a pair
    one bit apart, -0.0 against 0.0, a non-finite pair, other dtypes or shapes get None."""
    from cp_debug.compare.device_diff import identical_diff, identical_many

    a = torch.linspace(-3, 2, 1000, device=device).reshape(10, 100)
    bit = a.clone()
    bit.view(torch.int32)[3, 7] += 1
    zero = torch.zeros(4, device=device)
    inf = a.clone()
    inf[0, 0] = float("inf")
    items = [("same", a, a.clone()), ("bit", a, bit), ("signed zero", zero, -zero), ("inf", inf, inf.clone()),
             ("half", a, a.half()), ("shape", a, a[:2]), ("int", a.long(), a.long()), ("empty", a[:0], a[:0])]
    got = identical_many(items)
    assert [g is not None for g in got] == [True, False, False, False, False, False, False, True]
    assert got[0].max_abs == 0 and got[0].ref_absmax == 3.0 and got[0].status == "ok"
    assert [identical_diff(*item) for item in items] == got


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_diff_many_gives_each_pairs_own_figures(device):
    """Several probes in one call (one copy to the host): each pair's figures as `diff_tensors` gives them alone,
    whatever lies between them (an identical pair, a NaN, a shape mismatch, an integer tensor)."""
    from cp_debug.compare.device_diff import diff_many

    rs = np.random.RandomState(3)
    a = torch.from_numpy((rs.randn(4, 300, 70) * 2).astype(np.float32)).to(device)
    b = (a + 1e-3 * torch.from_numpy(rs.randn(4, 300, 70).astype(np.float32)).to(device)).half()
    nan = a.clone()
    nan[0, 0, 0] = float("nan")
    tol = default_tolerance("fp16")
    items = [("b", a, b, tol), ("same", a, a, tol), ("nan", a, nan, tol), ("shape", a, a[:2], tol),
             ("int", a.long(), a.long(), tol), ("b16", b, a, None)]
    many = diff_many(items, one_pass=True)
    alone = [diff_tensors(*item) for item in items]
    assert [d.status for d in many] == ["ok", "ok", "nan", "shape_mismatch", "ok", "diverged"]  # fp32 tolerance
    for x, y in zip(many, alone):
        for f in EXACT + SUMS:
            u, v = getattr(x, f), getattr(y, f)
            both_nan = isinstance(u, float) and math.isnan(u) and math.isnan(v)
            assert u == v or both_nan or (f in SUMS and math.isclose(u, v, rel_tol=1e-12)), (x.name, f)


@pytest.mark.parametrize("device", [CUDA])
def test_comparisons_made_while_the_fused_pass_warms_up_on_another_thread_are_its_figures(device):
    """A bisect warms the fused pass up on a helper thread while it loads the model
    (`device_warm.warm_up_in_background`); a comparison asked meanwhile waits for the first launch instead of compiling
    again, and gives the figures a comparison after it gives."""
    from cp_debug.compare import device_warm, fused_diff

    rs = np.random.RandomState(2)
    ref = torch.from_numpy((rs.randn(2, 64, 300) * 3).astype(np.float32)).to(device)
    test = ref.half()
    warming = device_warm.warm_up_in_background()
    during = diff_tensors("t", ref, test, default_tolerance("fp16"), one_pass=True)
    for helper in warming:
        helper.join()
    after = diff_tensors("t", ref, test, default_tolerance("fp16"), one_pass=True)
    assert fused_diff.reason_unavailable() is None
    assert during == after and during.max_abs > 0

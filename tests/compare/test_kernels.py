"""The compiled comparison kernel gives TensorDiff the numbers the float64 numpy path gives, NaN/Inf included,
and the numpy fallbacks (no numba) agree with it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cp_debug.compare import kernels
from cp_debug.compare.diff import TensorDiff, Tolerance
from cp_debug.compare.plot_data import error_heatmap

pytestmark = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")
TOL = Tolerance(atol=1e-3, rtol=1e-2, max_share=1e-3)
FIELDS = ("max_abs", "mean_abs", "max_rel", "rmse", "rel_rmse", "cosine", "snr_db", "share_beyond", "ref_absmax",
          "test_absmax", "nan", "inf", "status")


def _pairs():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((2, 8, 70, 90)).astype(np.float32)
    near = ref + rng.standard_normal(ref.shape).astype(np.float32) * np.float32(2e-3)
    spiky = np.where(rng.random(ref.shape) < 1e-3, ref + 5, ref).astype(np.float32)
    holes = near.copy()
    holes.reshape(-1)[[7, 5000, 90000]] = [np.nan, np.inf, -np.inf]
    return ref, {"near": near, "near as float16": near.astype(np.float16), "spiky": spiky, "holes": holes,
                 "zeros": np.zeros_like(ref), "itself": ref.copy()}


def _close(a, b, field):
    if isinstance(b, str) or isinstance(b, int):
        return a == b
    if math.isnan(b):
        return math.isnan(a)
    if math.isinf(b):
        return a == b
    rtol = 1e-6 if field in ("max_abs", "max_rel") else 1e-9  # maxima are float32 in the kernel
    return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-12)


@pytest.mark.parametrize("case", ["near", "near as float16", "spiky", "holes", "zeros", "itself"])
def test_kernel_matches_the_float64_path(case):
    ref, tests = _pairs()
    test = tests[case]
    got = TensorDiff.from_arrays("t", ref, test, TOL)
    want = TensorDiff.from_arrays("t", ref.astype(np.float64), test.astype(np.float64), TOL)  # float64: numpy
    for f in FIELDS:
        assert _close(getattr(got, f), getattr(want, f), f), (case, f, getattr(got, f), getattr(want, f))


def test_parts_do_not_depend_on_the_thread_count():
    import numba

    ref, tests = _pairs()
    r, t = ref.reshape(-1), tests["near"].reshape(-1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kernels.diff_parts(r, t, 1e-3, 1e-2)
        numba.set_num_threads(before)
        many = kernels.diff_parts(r, t, 1e-3, 1e-2)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, many)


def test_numpy_fallbacks_agree_with_the_kernel(monkeypatch):
    ref, tests = _pairs()
    test = tests["near as float16"]
    compiled = TensorDiff.from_arrays("t", ref, test, TOL)
    heat = error_heatmap(ref, test)
    monkeypatch.setattr(kernels, "available", lambda: False)
    plain = TensorDiff.from_arrays("t", ref, test, TOL)
    for f in FIELDS:
        assert _close(getattr(plain, f), getattr(compiled, f), "max_abs"), f  # float32 blocks: 1e-6 everywhere
    plain_heat = error_heatmap(ref, test)
    a, b = np.array(heat["data"], float), np.array(plain_heat["data"], float)
    assert np.allclose(a, b, rtol=2e-3)  # 4 significant digits each


def test_kernels_run_on_the_workqueue_layer():
    """numba's OpenMP layer busy-waits after every call (4-5 times the CPU seconds on the shared CPU machine);
    the kernels pick the workqueue layer unless NUMBA_THREADING_LAYER says otherwise."""
    import os

    import numba

    if os.environ.get("NUMBA_THREADING_LAYER"):
        pytest.skip("NUMBA_THREADING_LAYER is set: the user's layer stands")
    ref, tests = _pairs()
    kernels.diff_parts(ref.reshape(-1), tests["near"].reshape(-1), 1e-3, 1e-2)
    assert numba.threading_layer() == "workqueue"


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_heat_sums_channels_in_order_exactly(dtype):
    """The heat-map kernel's per-cell sum is float64 |test - ref| added channel after channel (what a report's
    heat map held before the kernel was vectorised), bit for bit; rows not a multiple of its row block included."""
    ref, tests = _pairs()
    r, t = ref[0], tests["near"][0].astype(dtype)  # (8, 70, 90)
    want = np.zeros(r.shape[1:], np.float64)
    for c in range(r.shape[0]):
        want += np.abs(t[c].astype(np.float32) - r[c]).astype(np.float64)
    assert np.array_equal(kernels.channel_abs_sum(r, t), want)


def test_float16_converts_exactly_both_ways():
    """Both float16 → float32 conversions the kernels may use — the processor's (`fpext half`: F16C, AArch64) and
    integer bit arithmetic — give numpy's float32 for every one of the 65,536 bit patterns (NaN as NaN), so a
    kernel's sums do not depend on which one this machine compiled."""
    import numba

    from cp_debug.compare import _numba_kernels as nk

    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    want = halves.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    by_bits = numba.njit(lambda h: [nk.half_by_bits(x) for x in h])
    converters = {"bits": by_bits}
    if nk.cpu_converts_half():
        converters["cpu"] = numba.njit(lambda h: [nk.half_by_cpu(x) for x in h])
    for name, convert in converters.items():
        got = np.array(convert(halves), np.float32)
        assert np.array_equal(np.isnan(got), nan), name
        assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32)), name


def test_warm_up_in_background_loads_what_runs_compare():
    """The warm-up a bisect starts while its model loads: once its thread is done, the diff and heat-map kernels are
    loaded for every operand pair of WARM_PAIRS (a comparison then finds them ready)."""
    import numba

    th = kernels.warm_up_in_background()
    th.join(timeout=600)
    assert not th.is_alive()
    k = kernels._kernels()
    for r, t in kernels.WARM_PAIRS:
        a, b = (numba.from_dtype(kernels._raw(np.zeros(1, x)).dtype) for x in (r, t))
        for name in ("diff", "heat"):
            assert any(sig[0].dtype == a and sig[1].dtype == b for sig in k[name].signatures), (name, r, t)


def test_one_call_over_chunks_gives_the_rows_of_a_call_per_chunk():
    """`diff_parts(..., chunk)` (a whole tensor in one call) returns, row for row, what one call per chunk returned,
    the last chunk shorter and a NaN in one part included, and `part_ranges` names the same elements."""
    rng = np.random.default_rng(8)
    chunk, n = 4096, 3 * 4096 + 77
    ref = rng.standard_normal(n).astype(np.float32)
    test = (ref + np.float32(1e-3) * rng.standard_normal(n).astype(np.float32)).astype(np.float16)
    test[5000] = np.nan
    whole = kernels.diff_parts(ref, test, 1e-3, 1e-2, chunk)
    each = np.concatenate([kernels.diff_parts(ref[lo:lo + chunk], test[lo:lo + chunk], 1e-3, 1e-2)
                           for lo in range(0, n, chunk)])
    assert np.array_equal(whole, each, equal_nan=True)  # the NaN part's sums are NaN on both sides
    ranges = [(lo + a, lo + b) for lo in range(0, n, chunk) for a, b in kernels.part_ranges(min(chunk, n - lo))]
    assert kernels.part_ranges(n, chunk) == ranges
    assert [int(r[0]) for r in whole] == [b - a for a, b in ranges]



@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_small_arrays_on_the_calling_thread_give_the_parallel_kernels_results(dtype, monkeypatch):
    """Below `PARALLEL_FROM` elements a comparison runs the serial kernels (a parallel call costs ~0.2 ms to start):
    the same parts and the same sums, bit for bit, as the parallel ones; the heat map's rows the same."""
    if not kernels.available():
        pytest.skip("numba is not installed")
    rs = np.random.RandomState(3)
    ref = rs.randn(5, 37, 41).astype(np.float32)
    test = (ref + rs.randn(*ref.shape).astype(np.float32) * 1e-2).astype(dtype)
    test[1, 2, 3] = np.nan
    assert ref.size < kernels.PARALLEL_FROM and ref.size < kernels.HEAT_PARALLEL_FROM
    flat = (ref.reshape(-1), test.reshape(-1))
    serial = [kernels.diff_parts(*flat, 0.01, 0.01, chunk) for chunk in (None, 1000)]
    heat = kernels.channel_abs_sum(ref, test)
    monkeypatch.setattr(kernels, "PARALLEL_FROM", 0)
    monkeypatch.setattr(kernels, "HEAT_PARALLEL_FROM", 0)
    parallel = [kernels.diff_parts(*flat, 0.01, 0.01, chunk) for chunk in (None, 1000)]
    for a, b in zip(serial, parallel):
        assert np.array_equal(a, b, equal_nan=True)
    assert np.array_equal(heat, kernels.channel_abs_sum(ref, test), equal_nan=True)
    assert np.isnan(heat[2, 3]) and np.isfinite(heat[0, 0])


_SMALL_FIRST = r"""
import json, sys
import numpy as np
from cp_debug.compare import kernels
from cp_debug.compare.diff import TensorDiff
rng = np.random.default_rng(0)
ref = rng.standard_normal((3, 64, 64)).astype(np.float32)
test = (ref + rng.standard_normal(ref.shape).astype(np.float32) * 1e-3).astype(np.float16)
small = TensorDiff.from_arrays("small", ref, test)
numba_after_small = "numba" in sys.modules
kernels.warm_up()
compiled = TensorDiff.from_arrays("small", ref, test)
print(json.dumps({"numba_after_small": numba_after_small, "numba_after_warm_up": "numba" in sys.modules,
                  "small": [small.max_abs, small.rmse, small.cosine], "compiled": [compiled.max_abs,
                  compiled.rmse, compiled.cosine], "worth_small": kernels.worth(ref.size)}))
"""


def test_small_comparisons_leave_numba_unloaded_until_asked():
    """A process that started no warm-up compares small arrays with numpy (numba never imported: a CUDA pair's
    host comparisons); once the kernels are asked for, every size takes them, with the same figures."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _SMALL_FIRST], cwd=root, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(root)})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["numba_after_small"] is False
    assert got["numba_after_warm_up"] is True and got["worth_small"] is True
    for a, b in zip(got["small"], got["compiled"]):
        assert a == pytest.approx(b, rel=1e-6)


_LARGE_FIRST = r"""
import json, sys
import numpy as np
from cp_debug.compare import kernels
from cp_debug.compare.diff import TensorDiff
rng = np.random.default_rng(1)
small_ref = rng.standard_normal((4, 32, 32)).astype(np.float32)
small_test = small_ref + rng.standard_normal(small_ref.shape).astype(np.float32) * np.float32(1e-3)
before = TensorDiff.from_arrays("small", small_ref, small_test)
worth_before, taken_before = kernels.worth(small_ref.size), kernels._TAKEN
large = rng.standard_normal(kernels.LOAD_FROM).astype(np.float32)
TensorDiff.from_arrays("large", large, large + np.float32(1e-3))
after = TensorDiff.from_arrays("small", small_ref, small_test)
print(json.dumps({"worth_before": worth_before, "taken_before": taken_before, "taken_after": kernels._TAKEN,
                  "worth_after": kernels.worth(small_ref.size), "numba": "numba" in sys.modules,
                  "before": [before.max_abs, before.rmse, before.cosine],
                  "after": [after.max_abs, after.rmse, after.cosine]}))
"""


def test_a_large_comparison_takes_the_kernels_for_every_later_one():
    """`kernels.take`'s other caller: with no warm-up, the first comparison of `LOAD_FROM` elements loads the kernels
    and every later comparison takes them, small ones too (before it, the small one is numpy's), the same figures."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _LARGE_FIRST], cwd=root, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(root)})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["worth_before"] is False and got["taken_before"] is False
    assert got["taken_after"] is True and got["worth_after"] is True and got["numba"] is True
    for a, b in zip(got["before"], got["after"]):
        assert a == pytest.approx(b, rel=1e-6)

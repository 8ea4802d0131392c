"""numba's CPU target loaded without scipy.linalg (`compare/numba_start.py`), in fresh processes: this one has numba's
target and scipy loaded already."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")
pytest.importorskip("scipy")

ROOT = Path(__file__).resolve().parents[2]

FRESH = r"""
import json, sys
import numpy as np
from cp_debug.compare import kernels
from cp_debug.compare.diff import TensorDiff
kernels.warm_up()
after_kernels = "scipy.linalg" in sys.modules
import numba.np.arraymath as arraymath
have_blas = arraymath._HAVE_BLAS
rng = np.random.default_rng(0)
ref = rng.standard_normal(5000).astype(np.float32)
test = ref + rng.standard_normal(5000).astype(np.float32) * 1e-3
compiled = TensorDiff.from_arrays("t", ref, test)
d = (test.astype(np.float64) - ref)
import numba
@numba.njit
def dot(a, b):
    return np.dot(a, b)
a = np.arange(4.0)
product = float(dot(a, a))
after_dot = "scipy.linalg" in sys.modules  # numba's np.dot imports it as it compiles
import scipy.linalg.cython_blas  # numba's own answer: the extension imports here
print(json.dumps({"after_kernels": after_kernels, "have_blas": have_blas, "max_abs": compiled.max_abs,
                  "rmse": compiled.rmse, "np_max_abs": float(np.abs(d).max()),
                  "np_rmse": float(np.sqrt(np.mean(d * d))), "dot": product,
                  "after_dot": after_dot}))
"""

ALREADY = r"""
import json, sys
import scipy.linalg
from cp_debug.compare.numba_start import start
start()
print(json.dumps({"target_loaded_by_start": "numba.np.arraymath" in sys.modules}))
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kernels_load_without_scipy_linalg_and_blas_answered_as_numba_does():
    got = _run(FRESH)
    assert got["after_kernels"] is False  # the comparison kernels loaded: scipy.linalg not imported
    assert got["have_blas"] is True  # numba's own answer where scipy's cython_blas imports (it does, below)
    assert got["max_abs"] == pytest.approx(got["np_max_abs"], rel=1e-6)
    assert got["rmse"] == pytest.approx(got["np_rmse"], rel=1e-6)
    assert got["dot"] == 14.0 and got["after_dot"] is True  # a compiled np.dot still works, importing it then


def test_scipy_linalg_imported_already_leaves_numba_its_own_path():
    assert _run(ALREADY) == {"target_loaded_by_start": False}

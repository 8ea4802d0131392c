"""numba's CPU target loaded without importing `scipy.linalg` whole.

A process's first compiled call (a kernel compiled, or loaded from numba's cache) refreshes numba's CPU target, which
imports `numba.np.arraymath`; that module asks once, at import, whether a BLAS is there (`_HAVE_BLAS`, for its
`np.correlate` / `np.convolve`) through `numba.np.linalg.ensure_blas`, which imports `scipy.linalg.cython_blas` — and
so the whole `scipy.linalg` package (85 modules): 0.25-0.43 of numba's 0.73-0.92 CPU s start on the two-core CPU
machine (the comparison kernels' warm-up with the import and without it), in every bisect. cp_debug's kernels call no
BLAS.

`start()` refreshes the target with that question answered from where scipy's `cython_blas` extension lies (found on
disk, not imported): numba's own answer wherever the extension imports. numba's `ensure_blas` is back before `start`
returns, so compiled code that calls `np.dot` or LAPACK later imports `scipy.linalg` then, as numba always does. Once
a process, under a lock; nothing is done where the target is loaded already, where `scipy.linalg` is imported already
(nothing to save), or where numba's internals are not as read here (numba 0.68): numba's own path then.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_STARTED = False


def start() -> None:
    """numba's CPU target refreshed, `scipy.linalg` left unimported (see the module); a no-op after the first call."""
    global _STARTED
    if _STARTED:
        return
    with _LOCK:
        if _STARTED:
            return
        try:
            _refresh()
        finally:
            _STARTED = True


def _refresh() -> None:
    import sys

    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        from numba.core.registry import cpu_target
        from numba.np import linalg
    except ImportError:  # no numba: its users' own import says so
        return
    real = getattr(linalg, "ensure_blas", None)
    if real is None:
        return
    linalg.ensure_blas = _blas_found
    try:
        cpu_target.target_context.refresh()
    finally:
        linalg.ensure_blas = real


def _blas_found() -> None:
    """numba's `ensure_blas` question without the import: ImportError unless scipy's `linalg/cython_blas` extension
    is on disk."""
    import importlib.machinery
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("scipy")
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    names = {"cython_blas" + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES}
    if not any((Path(folder) / "linalg" / name).is_file() for folder in folders for name in names):
        raise ImportError("scipy 0.16+ is required for linear algebra")

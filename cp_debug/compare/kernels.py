"""Compiled comparison kernels (numba): every TensorDiff sum and maximum in one pass over the two arrays.

numpy needs a pass per operation (difference, abs, four products, three maxima, the tolerance test, …): 22
passes over each block, 3.2 ns an element on the two-core CPU machine in float32 (5.2 in float64), which was
the larger half of an FP16 lockstep bisect's time after the inference. These kernels read each element once
(0.55 ns an element there) and accumulate the sums in float64.

- Sums are exact float64 products of the float32 operands, accumulated in float64. Maxima (max |diff|,
  max |diff|/|ref|) are float32 values, within one float32 rounding (6e-8 relative) of the float64 ones; they
  are taken on the bit patterns of non-negative floats, which order like the values: compilers vectorise
  integer maxima but not float ones that must respect NaN. A part holding a NaN or an infinity
  reports so (`nonfinite`): the caller measures it again with numpy, which keeps the exact NaN/Inf semantics.
- Parts are fixed ranges of the input, not one per thread, so the sums do not depend on the thread count.
- `available()` is False where numba is not installed: callers then use their numpy paths (float64 blocks).
- One call at a time (a lock): numba's workqueue thread layer may not be entered from two threads at once.
- The workqueue layer (`NUMBA_THREADING_LAYER` unset): numba's OpenMP layer, its default where libgomp is
  found, busy-waits at the end of every call and whenever a thread of the team is descheduled; on the shared
  two-core CPU machine it took 4-5 times the CPU seconds of the workqueue layer for the same calls (0.8 against
  4 ns an element), the same parts in the same order, so the same sums.
"""

from __future__ import annotations

import threading

import numpy as np

SINGLE = (np.dtype(np.float32), np.dtype(np.float16))  # the dtypes the kernels take
PARTS = 16  # fixed ranges per call: the summation order, whatever the number of threads
SUMS = ("n", "sum_abs", "sum_sq", "dot", "ref_sq", "test_sq", "max_abs", "max_rel", "ref_absmax", "test_absmax",
        "beyond", "nonfinite")
_PART_MAX = (1 << 31) - 1  # elements a part of one call may hold
# smaller arrays are compared on the calling thread: a parallel call costs ~0.2 ms to start on the CPU machine, which
# was most of DenseNet-121's 3,492 comparisons (1.8 s of a 9 s bisect); the parts and their sums are the same
PARALLEL_FROM = 1 << 20
HEAT_PARALLEL_FROM = 1 << 23  # the heat map's serial rows vectorise: 1.36 ms against 1.43 at 64×224×224
_LOCK = threading.Lock()
_KERNELS: dict | None = None
_MISSING = False
_TAKEN = False  # every comparison takes the kernels, whatever its size (`take`: the one place that sets it)
# a comparison this large loads numba where nothing has yet: its start (~1 s of CPU on the CPU machine, most of it
# holding the GIL) is not paid back by a few small arrays (a CUDA pair compares on the host only the graph as
# deployed and its outputs: 0.2 s of an H200 awml-base bisect went to numba's start beside the main thread)
LOAD_FROM = 1 << 22


def available() -> bool:
    return _kernels() is not None


def worth(n: int) -> bool:
    """Whether a comparison of `n` elements takes the kernels: any size once they are loaded or asked for (a warm-up
    started: the CPU pairs, a sweep, a server), else from `LOAD_FROM` elements on; below, the caller's numpy path
    (the same sums in float64 blocks, the maxima exact) and numba is never imported."""
    if _MISSING:
        return False
    if not _TAKEN and n < LOAD_FROM:
        return False
    return available()  # loading them takes them (`take`)


def take() -> None:
    """Every comparison from now on takes the kernels, whatever its size: the one place that decides it, for the rest
    of the process. Said by a warm-up before its thread starts (the CPU pairs, a sweep, a server: before their first
    comparison, so no comparison of the run is made on numpy's path and another on the kernels'), by the first
    comparison of `LOAD_FROM` elements or more, and by the kernels' first load (`available`)."""
    global _TAKEN
    _TAKEN = True


def diff_parts(ref: np.ndarray, test: np.ndarray, atol: float, rtol: float, chunk: int | None = None) -> np.ndarray:
    """(PARTS, len(SUMS)) partial results for two flat, C-contiguous float32 or float16 arrays of one size
    (float16 converted exactly in the kernel, from its bits); with `chunk`, PARTS rows for each chunk of that many
    elements in turn (the last one shorter), from one call: the rows a call per chunk would give. Maxima come
    back as float32 values; `nonfinite` is > 0 where a part holds a NaN or an infinity (its other fields are
    then meaningless). `part_ranges(ref.size, chunk)` gives the rows' element ranges."""
    chunk = max(1, min(ref.size, chunk or ref.size))
    if chunk >= PARTS * _PART_MAX:  # a part counts its elements beyond tolerance in int32 (_numba_kernels.part)
        raise ValueError(f"diff_parts takes chunks of fewer than {PARTS * _PART_MAX} elements, got {chunk}")
    if ref.size == 0:  # no chunk: empty parts, as a call on nothing always gave (the kernel gives no row)
        return np.zeros((PARTS, len(SUMS)))
    k = _kernels()
    kernel = k["diff"] if ref.size >= PARALLEL_FROM else k["diff_serial"]
    with _LOCK:
        out = kernel(_raw(ref), _raw(test), float(atol), float(rtol), PARTS, chunk)
    for col in (6, 7, 8, 9):
        out[:, col] = out[:, col].astype(np.uint32).view(np.float32)
    out[:, 11] = out[:, 11] >= 0x7F800000
    return out


def finite_absmax(a: np.ndarray, chunk: int = 1 << 22) -> float | None:
    """max |a| of a flat float32/float16 array in one pass; None where it holds a NaN or an infinity."""
    if a.size == 0:
        return 0.0
    x = np.ascontiguousarray(a)
    rows = diff_parts(x, x, 0.0, 0.0, chunk)
    if rows[:, 11].any():
        return None
    return float(rows[:, 8].max())


def part_ranges(n: int, chunk: int | None = None) -> list[tuple[int, int]]:
    """The [lo, hi) element ranges of `diff_parts`'s rows for arrays of n elements (in chunks of `chunk`)."""
    chunk = max(1, min(n, chunk or n))
    out = []
    for base in range(0, n, chunk) if n else [0]:
        m = min(n, base + chunk) - base
        step = -(-m // PARTS)
        out += [(base + min(m, p * step), base + min(m, min(m, p * step) + step)) for p in range(PARTS)]
    return out


def channel_abs_sum(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """(C, H, W) float32/float16 arrays → (H, W) float64: the sum over channels of |test − ref| (NaN or inf where
    a channel's is)."""
    k = _kernels()
    kernel = k["heat"] if ref.size >= HEAT_PARALLEL_FROM else k["heat_serial"]
    with _LOCK:
        return kernel(_raw(ref), _raw(test))


# the operand types a run compares: float32 pairs, a float16 candidate against a float32 reference, float16 pairs
WARM_PAIRS = ((np.float32, np.float32), (np.float32, np.float16), (np.float16, np.float16))


def warm_up() -> None:
    """Load every kernel for the operand types of `WARM_PAIRS` (from numba's cache folder; compiled where it has
    none): a process's first call costs numba's start, about 1 s of CPU on the CPU machine even from its cache."""
    take()
    if not available():
        return
    for r, t in WARM_PAIRS:
        a, b = np.zeros((1, 8, 8), r), np.zeros((1, 8, 8), t)
        diff_parts(a.reshape(-1), b.reshape(-1), 0.0, 0.0)
        channel_abs_sum(a, b)
        with _LOCK:  # the parallel kernels, which large arrays only take
            _kernels()["diff"](_raw(a.reshape(-1)), _raw(b.reshape(-1)), 0.0, 0.0, PARTS, a.size)
            _kernels()["heat"](_raw(a), _raw(b))


def warm_up_in_background() -> threading.Thread:
    """`warm_up` on a daemon thread (started; returned for whoever wants to wait for it), while the caller loads its
    model and runs the first segments: a comparison that comes first waits for it (the kernels' lock). Never raises:
    a comparison that needs a kernel loads it again and says what goes wrong."""

    from cp_debug.parallel import in_background

    take()  # before the thread starts: the comparisons meanwhile wait for the kernels, whatever their size
    return in_background(warm_up, "cpdebug-kernels-warm-up")


def _raw(a: np.ndarray) -> np.ndarray:
    """What the kernels take: float32 as it is, float16 as its bits (numba has no float16 arithmetic)."""
    return a.view(np.uint16) if a.dtype == np.float16 else a


def _kernels() -> dict | None:
    global _KERNELS, _MISSING
    if _KERNELS is not None or _MISSING:
        return _KERNELS
    take()
    with _LOCK:
        if _KERNELS is None and not _MISSING:
            try:
                _KERNELS = _compile()
            except ImportError:
                _MISSING = True
    return _KERNELS


def _compile() -> dict:
    import os

    from cp_debug.compare import _numba_kernels as nk  # imports numba (ImportError where it is missing)
    from cp_debug.compare.numba_start import start

    start()  # numba's target without scipy.linalg (numba_start.py says why)

    if not os.environ.get("NUMBA_THREADING_LAYER"):  # the module docstring says why; a user's choice stands
        import numba

        numba.config.THREADING_LAYER = "workqueue"

    return {"diff": nk.diff, "diff_serial": nk.diff_serial, "heat": nk.heat, "heat_serial": nk.heat_serial}

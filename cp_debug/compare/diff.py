"""Typed per-tensor differences between a reference and a candidate array."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from cp_debug.compare import kernels
from cp_debug.parallel import run_parts, split, thread_count


@dataclass(frozen=True)
class Tolerance:
    """An element is beyond tolerance when |test - ref| > atol + rtol * |ref|.

    A tensor diverges when more than `max_share` of its elements are beyond tolerance (0 = any element).
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    max_share: float = 0.0

    def scaled(self, factor: float) -> "Tolerance":
        return Tolerance(self.atol * factor, self.rtol * factor, self.max_share)


# Defaults by the candidate's precision: what a correct backend of that precision stays within.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3),
    "tf32": Tolerance(atol=2e-3, rtol=1e-2),
    "fp16": Tolerance(atol=2e-2, rtol=2e-2, max_share=1e-3),
    "bf16": Tolerance(atol=1e-1, rtol=5e-2, max_share=1e-3),
    "int8": Tolerance(atol=1e-1, rtol=1e-1, max_share=1e-2),
    # E4M3 rounds each input by up to 2^-4 of itself: four such roundings. Measured (`ort-cpu-fp8`, tests/zoo's
    # ViT, DETR-like, ResNet): no element beyond these; at INT8's 0.1 / 0.1, 2.6% of a healthy ViT layer's (> 2%)
    "fp8": Tolerance(atol=2.5e-1, rtol=2.5e-1, max_share=2e-2),
    # MXFP8: E4M3 values under a per-32 power-of-two scale, rounded as finely as FP8's. NVFP4: E2M1 rounds a value
    # by a quarter of itself at its block's top and flushes those below a twelfth of it. Measured (`ort-cpu-nvfp4`,
    # every tensor of tests/precision/test_nvfp4.py's CNN and transformer block): at 0.25 / 0.25, 4.2% of a healthy
    # block's tensor beyond; at these, none
    "mxfp8": Tolerance(atol=2.5e-1, rtol=2.5e-1, max_share=2e-2),
    "nvfp4": Tolerance(atol=5e-1, rtol=5e-1, max_share=5e-2),
}


def default_tolerance(precision: str) -> Tolerance:
    return DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["fp32"])


# A probe's status words beyond ok / diverged: "nan" where its values hold a NaN, "inf" where they hold an Inf and no
# NaN (the two are treated alike: NON_FINITE), "shape_mismatch" (never broadcast). BROKEN: no tolerance passes them.
NON_FINITE = ("nan", "inf")
BROKEN = (*NON_FINITE, "shape_mismatch")



def one_shape(a: tuple, b: tuple) -> bool:
    """Whether shapes `a` and `b` hold the same single value: a 0-d tensor and its 1-element twin ([], [1], [1, 1])
    are one shape (a YOLO head's `Cast` of a scalar comes out [1] where a converter folded it), never a layout
    mix-up; any other difference is one."""
    return a != b and int(np.prod(a, dtype=np.int64)) == 1 == int(np.prod(b, dtype=np.int64))

def same_members(ref: np.ndarray, test: np.ndarray) -> bool:
    """Two integer tensors whose rows (the last axis) hold the same members in another order: a TopK's chosen indices
    (an MoE router's experts) where near-tied scores came out in the other order choose the same experts — the same
    choice, not an error of |i − j| (`choice_runs` compares a TopK's outputs as sets the same way)."""
    if ref.dtype.kind not in "iu" or test.dtype.kind not in "iu" or ref.ndim == 0 or ref.shape != test.shape:
        return False
    return not np.array_equal(ref, test) and np.array_equal(np.sort(ref, axis=-1), np.sort(test, axis=-1))


@dataclass(frozen=True)
class TensorDiff:
    """How far `test` is from `ref`. Shapes must match exactly: a mismatch is its own status, never broadcast."""

    name: str
    ref_shape: tuple[int, ...]
    test_shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    max_rel: float
    rmse: float
    rel_rmse: float  # rmse / rms(ref): scale-free, what ranking and amplification use
    cosine: float
    snr_db: float
    share_beyond: float
    nan: int
    inf: int
    ref_absmax: float
    test_absmax: float
    status: str  # ok | diverged | nan | inf | shape_mismatch

    @property
    def shape_ok(self) -> bool:
        return self.ref_shape == self.test_shape or one_shape(self.ref_shape, self.test_shape)

    @property
    def rel_max(self) -> float:
        """max |test − ref| / max |ref|: the largest error on the tensor's own scale. Unlike `max_rel` (the largest
        per-element |diff| / |ref|, which explodes wherever a reference value is near zero) it says how big the
        worst error is next to the values the tensor holds."""
        if not math.isfinite(self.max_abs) or not math.isfinite(self.ref_absmax):
            return self.max_abs if math.isnan(self.max_abs) or math.isnan(self.ref_absmax) else math.inf
        if self.ref_absmax == 0:
            return 0.0 if self.max_abs == 0 else math.inf
        return self.max_abs / self.ref_absmax

    @classmethod
    def from_arrays(cls, name: str, ref: np.ndarray, test: np.ndarray, tol: Tolerance | None = None) -> "TensorDiff":
        tol = tol or Tolerance()
        ref = np.asarray(ref)
        test = np.asarray(test)
        if ref.shape != test.shape and one_shape(ref.shape, test.shape):
            test = test.reshape(ref.shape)  # a 0-d tensor and its 1-element twin: one value, compared as such
        if ref.shape != test.shape:
            nan_ = inf_ = 0
            if np.issubdtype(test.dtype, np.floating):
                nan_ = int(np.isnan(test).sum())
                inf_ = int(np.isinf(test).sum())
            return cls(name, tuple(ref.shape), tuple(test.shape), *([math.nan] * 7), math.nan, nan_, inf_,
                       _absmax(ref), _absmax(test), "shape_mismatch")
        if same_members(ref, test):
            return cls._identical(name, ref)
        compiled = ref.dtype in kernels.SINGLE and test.dtype in kernels.SINGLE and kernels.worth(ref.size)
        if test is ref and compiled:
            amax = kernels.finite_absmax(ref.reshape(-1))  # one pass: None where a NaN/Inf is present
            if amax is not None:
                return cls._identical(name, ref, amax)
        elif test is ref and np.issubdtype(ref.dtype, np.floating) and all_finite(ref):
            return cls._identical(name, ref)
        flat_r, flat_t = ref.reshape(-1), test.reshape(-1)
        if compiled:
            acc = _Accumulator(tol)
            acc.add_compiled(flat_r, flat_t)
            return acc.result(cls, name, tuple(ref.shape), tuple(test.shape))

        def part(lo: int, hi: int) -> _Accumulator:
            acc = _Accumulator(tol)
            for a in range(lo, hi, _CHUNK):
                b = min(hi, a + _CHUNK)
                acc.add(flat_r[a:b], flat_t[a:b])
            return acc

        threads = thread_count() if flat_r.size >= _PARALLEL_MIN else 1
        accs = run_parts(part, split(flat_r.size, threads, _CHUNK))
        acc = accs[0]
        for other in accs[1:]:
            acc.merge(other)
        return acc.result(cls, name, tuple(ref.shape), tuple(test.shape))

    @classmethod
    def _identical(cls, name: str, ref: np.ndarray, amax: float | None = None) -> "TensorDiff":
        """The candidate's array *is* the reference's (the runner found them bit-identical): zero error, no
        arithmetic; only the reference's own magnitude is measured (`amax`, when already known)."""
        if ref.size == 0:
            return cls.identical(name, ref.shape, 0.0)
        return cls.identical(name, ref.shape, _absmax(ref) if amax is None else amax)

    @classmethod
    def identical(cls, name: str, shape: tuple[int, ...], amax: float) -> "TensorDiff":
        """Two finite tensors of `shape` found bit-identical elsewhere (on a GPU, say), whose largest magnitude
        is `amax`: zero error."""
        shape = tuple(shape)
        return cls(name, shape, shape, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, math.inf, 0.0, 0, 0, amax, amax, "ok")

    def to_json(self) -> dict:
        d = asdict(self)
        d["ref_shape"] = list(self.ref_shape)
        d["test_shape"] = list(self.test_shape)
        d["rel_max"] = self.rel_max
        return d


_CHUNK = 1 << 16  # elements per block: metrics stream in float64 over cache-sized blocks, no big temporaries
_KERNEL_CHUNK = 1 << 22  # elements per chunk of the compiled kernel, cut into its parts: the order of the sums
_PARALLEL_MIN = 1 << 21  # elements from which a tensor's blocks are shared out over threads (cp_debug/parallel.py)


class _Accumulator:
    """Running sums for TensorDiff over blocks of elements."""

    def __init__(self, tol: Tolerance):
        self.tol = tol
        self.n = 0
        self.nan = self.inf = 0
        self.nonfinite_diff = 0
        self.max_abs = self.max_rel = 0.0
        self.sum_abs = self.sum_sq = self.ref_sq = self.test_sq = self.dot = 0.0
        self.beyond = 0
        self.ref_absmax = self.test_absmax = 0.0
        self._buf: dict[int, tuple[np.ndarray, ...]] = {}  # float64 scratch blocks (+ one bool) by size

    def _scratch(self, n: int) -> tuple[np.ndarray, ...]:
        if n not in self._buf:
            self._buf = {n: tuple(np.empty(n, np.float64) for _ in range(4)) + (np.empty(n, np.bool_),)}
        return self._buf[n]

    def add_compiled(self, ref: np.ndarray, test: np.ndarray) -> None:
        """float32/float16 operands through the compiled one-pass kernel (`kernels.py`): the parts of every chunk
        from one call, summed in order; a part holding NaN/Inf is measured again by `add` (float64, exact NaN/Inf
        rules). (A call per chunk gave the same rows; each call's start and end left a core idle, a third of this
        pass's time on the two-core CPU machine.)"""
        if ref.size == 0:
            return
        r, t = np.ascontiguousarray(ref), np.ascontiguousarray(test)
        rows = kernels.diff_parts(r, t, self.tol.atol, self.tol.rtol, _KERNEL_CHUNK)
        for (a, b), row in zip(kernels.part_ranges(r.size, _KERNEL_CHUNK), rows):
            if a == b:
                continue
            if row[11]:
                for c in range(a, b, _CHUNK):
                    self.add(r[c:min(b, c + _CHUNK)], t[c:min(b, c + _CHUNK)])
                continue
            self.n += int(row[0])
            self.sum_abs += row[1]
            self.sum_sq += row[2]
            self.dot += row[3]
            self.ref_sq += row[4]
            self.test_sq += row[5]
            self.max_abs = max(self.max_abs, float(row[6]))
            self.max_rel = max(self.max_rel, float(row[7]))
            self.ref_absmax = max(self.ref_absmax, float(row[8]))
            self.test_absmax = max(self.test_absmax, float(row[9]))
            self.beyond += int(row[10])

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        n = ref.size
        if n == 0:
            return
        r, t, d, a, mask = self._scratch(n)
        r[...] = ref
        t[...] = test
        self.n += n
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: the block is measured by _add_nonfinite
            np.subtract(t, r, out=d)
            np.abs(d, out=d)
            if not np.isfinite(d.sum()):  # rare: NaN/Inf somewhere in this block
                self._add_nonfinite(r, t, d)
                return
        np.abs(r, out=a)
        self.max_abs = max(self.max_abs, float(d.max()))
        self.ref_absmax = max(self.ref_absmax, float(a.max()))
        self.test_absmax = max(self.test_absmax, float(t.max()), -float(t.min()))
        self.sum_abs += float(d.sum())
        self.sum_sq += float(_dot(d, d))
        self.dot += float(_dot(r, t))
        self.ref_sq += float(_dot(r, r))
        self.test_sq += float(_dot(t, t))
        # beyond tolerance: d > atol + rtol*|r|, written into `t` (no longer needed)
        np.multiply(a, self.tol.rtol, out=t)
        t += self.tol.atol
        self.beyond += int(np.count_nonzero(np.greater(d, t, out=mask)))
        np.maximum(a, 1e-12, out=a)
        np.divide(d, a, out=a)
        self.max_rel = max(self.max_rel, float(a.max()))

    def merge(self, o: "_Accumulator") -> None:
        """Fold another part's sums in (parts of one tensor, in order)."""
        self.n += o.n
        self.nan += o.nan
        self.inf += o.inf
        self.nonfinite_diff += o.nonfinite_diff
        self.max_abs, self.max_rel = max(self.max_abs, o.max_abs), max(self.max_rel, o.max_rel)
        self.ref_absmax, self.test_absmax = max(self.ref_absmax, o.ref_absmax), max(self.test_absmax, o.test_absmax)
        self.sum_abs += o.sum_abs
        self.sum_sq += o.sum_sq
        self.ref_sq += o.ref_sq
        self.test_sq += o.test_sq
        self.dot += o.dot
        self.beyond += o.beyond

    def _add_nonfinite(self, r: np.ndarray, t: np.ndarray, d: np.ndarray) -> None:
        """A block holding NaN/Inf. An element where the candidate holds what the reference holds — the same
        infinity, or NaN against NaN (an attention mask's -inf in FP32 and in FP16 alike) — agrees: no error, and
        not counted as the candidate's NaN/Inf, which are those where the reference is not the same."""
        same = (np.isnan(t) & np.isnan(r)) | (np.isinf(t) & (t == r))
        self.nan += int((np.isnan(t) & ~same).sum())
        self.inf += int((np.isinf(t) & ~same).sum())
        finite = np.isfinite(d) | same
        self.nonfinite_diff += int((~finite).sum())
        df = np.where(finite & ~same, d, 0.0)
        absr = np.abs(r)
        self.max_abs = max(self.max_abs, float(df.max()))
        self.max_rel = max(self.max_rel, float((df / np.maximum(absr, 1e-12)).max()))
        rf = np.where(np.isfinite(r), r, 0.0)
        tf = np.where(np.isfinite(t), t, 0.0)
        self.ref_absmax = max(self.ref_absmax, float(np.abs(rf).max()))
        self.test_absmax = max(self.test_absmax, float(np.abs(tf).max()))
        self.dot += float(_dot(rf, tf))
        self.ref_sq += float(_dot(rf, rf))
        self.test_sq += float(_dot(tf, tf))
        self.sum_abs += float(df.sum())
        self.sum_sq += float(_dot(df, df))
        self.beyond += int((~finite | (d > self.tol.atol + self.tol.rtol * absr)).sum())

    def result(self, cls, name, ref_shape, test_shape) -> "TensorDiff":
        n, tol = self.n, self.tol
        if n == 0:
            return cls(name, ref_shape, test_shape, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, math.inf, 0.0, self.nan, self.inf,
                       0.0, 0.0, "ok")
        bad = self.nonfinite_diff > 0
        max_abs = math.inf if bad else self.max_abs
        mean_abs = math.inf if bad else self.sum_abs / n
        max_rel = math.inf if bad else self.max_rel
        mse = math.inf if bad else self.sum_sq / n
        rmse = math.sqrt(mse)
        ref_power = self.ref_sq / n
        rel_rmse = rmse / math.sqrt(ref_power) if ref_power > 0 else (0.0 if rmse == 0 else math.inf)
        if bad:
            cosine = math.nan
        elif self.ref_sq == 0 and self.test_sq == 0:
            cosine = 1.0
        elif self.ref_sq == 0 or self.test_sq == 0:
            cosine = 0.0
        else:
            cosine = self.dot / math.sqrt(self.ref_sq * self.test_sq)
        if mse == 0:
            snr_db = math.inf
        elif ref_power == 0 or not math.isfinite(mse):
            snr_db = -math.inf
        else:
            snr_db = 10.0 * math.log10(ref_power / mse)
        share = self.beyond / n
        if self.nan or self.inf:
            status = "nan" if self.nan else "inf"
        elif (share > tol.max_share) if tol.max_share > 0 else self.beyond > 0:
            status = "diverged"
        else:
            status = "ok"
        return cls(name, ref_shape, test_shape, max_abs, mean_abs, max_rel, rmse, rel_rmse, cosine, snr_db, share,
                   self.nan, self.inf, self.ref_absmax, self.test_absmax, status)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """sum(a*b) of two 1-D blocks without BLAS: numpy's dot hands 64k-element blocks to OpenBLAS's threads, which
    busy-wait against ONNX Runtime's and every other process's threads on a loaded machine (measured: the demo
    bisect spent 58 s user time against 13 s with one BLAS thread); einsum's own loop needs no thread."""
    return float(np.einsum("i,i->", a, b))


def all_finite(a: np.ndarray, block: int = 1 << 20) -> bool:
    """No NaN/Inf in `a`, checked in blocks (no full-size temporary)."""
    flat = a.reshape(-1)
    return all(np.isfinite(flat[lo:lo + block]).all() for lo in range(0, flat.size, block))


def _absmax(a: np.ndarray, block: int = 1 << 20) -> float:
    """max |a| over the finite elements, in blocks (no full-size temporary); inf when none is finite."""
    if a.size == 0 or not np.issubdtype(a.dtype, np.number):
        return 0.0
    flat = a.reshape(-1)
    best, any_finite = 0.0, False
    with np.errstate(invalid="ignore"):
        for lo in range(0, flat.size, block):
            x = np.abs(flat[lo:lo + block].astype(np.float64, copy=False))
            x = x[np.isfinite(x)] if not np.isfinite(x).all() else x
            if x.size:
                any_finite = True
                best = max(best, float(x.max()))
    return best if any_finite else math.inf

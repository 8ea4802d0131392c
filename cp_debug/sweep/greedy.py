"""The devkit's greedy center-distance matching of one frame, class and bucket, compiled (numba): for each
distance threshold, the detections in score order each take the nearest ground-truth box not taken yet, a true
positive where it lies within the threshold (nuscenes-devkit `accumulate`, per sample).

The loop in numpy (`np.argmin` of the distances with the taken boxes at infinity, per detection and threshold) held
Python's lock for most of a frame's metrics tables: on the sweep's metrics thread 49 ms a frame of an awml-base
sweep on an H200 host (py-spy, 150 frames; 100 detections and 87 ground-truth boxes a frame), competing with the
thread that launches the frame's networks (issue 87). The kernel gives the same flags — the first nearest box
where distances tie, as `argmin` takes it, and no match for a detection with a NaN distance to any box not taken
(`argmin` returns the first NaN) — and releases the lock (`nogil`).
"""

from __future__ import annotations

import numpy as np

_KERNEL = None


def true_positives(dist: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(detections, thresholds) true-positive flags of detections already in score order against ground-truth boxes
    at `dist` (detections × boxes, float64)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    return _KERNEL(np.ascontiguousarray(dist, dtype=np.float64), np.asarray(thresholds, dtype=np.float64))


def true_positives_numpy(dist: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The same flags by numpy's `argmin`, as the devkit's loop finds them (the kernel's reference in the tests)."""
    tp = np.zeros((dist.shape[0], len(thresholds)), dtype=bool)
    for k, th in enumerate(thresholds):
        taken = np.zeros(dist.shape[1], dtype=bool)
        for i in range(dist.shape[0]):
            d = np.where(taken, np.inf, dist[i])
            j = int(np.argmin(d))
            if d[j] < th:
                taken[j] = True
                tp[i, k] = True
    return tp


def _compile():
    import numba

    @numba.njit(cache=True, nogil=True)
    def greedy(dist, thresholds):  # pragma: no cover - compiled
        n, m = dist.shape
        tp = np.zeros((n, thresholds.shape[0]), dtype=np.bool_)
        for k in range(thresholds.shape[0]):
            taken = np.zeros(m, dtype=np.bool_)
            for i in range(n):
                j, best, nan = 0, np.inf, False
                for c in range(m):
                    if taken[c]:
                        continue
                    v = dist[i, c]
                    if v != v:  # argmin's first NaN: no match
                        nan = True
                        break
                    if v < best:
                        best, j = v, c
                if not nan and best < thresholds[k]:
                    taken[j] = True
                    tp[i, k] = True
        return tp

    return greedy

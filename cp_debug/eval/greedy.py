"""The devkit's greedy center-distance matching of one sample and class, compiled (numba): for each distance
threshold, the detections in score order each take the nearest ground-truth box not taken yet, a match where it lies
within the threshold (nuscenes-devkit `accumulate`, per sample). One kernel for the two who match that way:

- the sweep's metrics tables (`sweep/metrics.py`, `true_positives`): the flags of detections already in score order.
  The loop in numpy (`np.argmin` of the distances with the taken boxes at infinity) held Python's lock for most of
  a frame's tables: on the sweep's metrics thread 49 ms a frame of an awml-base sweep on an H200 host (py-spy, 150
  frames; 100 detections and 87 ground-truth boxes a frame), competing with the thread that launches the frame's
  networks (issue 87). Like `argmin`, a detection whose distance to a box not taken is NaN matches nothing.
- the devkit's evaluation frame by frame (`devkit_stream.py`, `matched_boxes`): which box each detection took, for
  the errors of each match. There a NaN distance is passed over, as the devkit's `this_distance < min_dist` does.

Both take the first nearest box where distances tie, and the kernel releases Python's lock (`nogil`).
"""

from __future__ import annotations

import numpy as np

_KERNEL = None


def matched_boxes(dist: np.ndarray, thresholds, *, nan_stops: bool = False) -> np.ndarray:
    """(detections, thresholds) index of the box each detection took (-1: none), detections in the order they choose
    (score order) against ground-truth boxes at `dist` (detections × boxes). `nan_stops`: a NaN distance to a box
    not taken leaves the detection unmatched (numpy's `argmin`), else it is passed over (the devkit's loop)."""
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = _compile()
    return _KERNEL(np.ascontiguousarray(dist, dtype=np.float64), np.asarray(thresholds, dtype=np.float64),
                   bool(nan_stops))


def true_positives(dist: np.ndarray, thresholds) -> np.ndarray:
    """(detections, thresholds) true-positive flags of detections already in score order (numpy's `argmin`'s NaN)."""
    return matched_boxes(dist, thresholds, nan_stops=True) >= 0


def true_positives_numpy(dist: np.ndarray, thresholds) -> np.ndarray:
    """The same flags by numpy's `argmin`, as the sweep's tables found them (the kernel's reference in the tests)."""
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

    from cp_debug.compare.numba_start import start

    start()  # numba's target without scipy.linalg (compare/numba_start.py says why)

    @numba.njit(cache=True, nogil=True)
    def greedy(dist, thresholds, nan_stops):  # pragma: no cover - compiled
        n, m = dist.shape
        out = np.full((n, thresholds.shape[0]), -1, dtype=np.int64)
        for k in range(thresholds.shape[0]):
            taken = np.zeros(m, dtype=np.bool_)
            for i in range(n):
                j, best, stopped = -1, np.inf, False
                for c in range(m):
                    if taken[c]:
                        continue
                    v = dist[i, c]
                    if v != v and nan_stops:  # argmin's first NaN: no match
                        stopped = True
                        break
                    if v < best:  # a NaN is never less: passed over
                        best, j = v, c
                if not stopped and j >= 0 and best < thresholds[k]:
                    taken[j] = True
                    out[i, k] = j
        return out

    return greedy

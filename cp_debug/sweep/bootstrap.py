"""The bootstrap of a sweep's AP changes: each resample's AP of a lane's (class, distance bucket), exactly as
nuscenes-devkit's `accumulate` and `calc_ap` give it (`metrics.py` says how the TP flags are made), worked out once
per (lane, key) and resample and shared by the AP change and the chain of `sweep_metrics`.

On a host with cores to spare the (lane, key) pairs go to the metrics' process pool beside the devkit's own
evaluation (`Bootstrap.warm`): the resamples are numpy calls too short to let go of the GIL for long, so eight
threads ran them in 12 s of a 1000-frame awml-base sweep's metrics on a 16-core H200 host (issue 71; most of it the
per-resample ordering of an FP16 candidate's tied scores, which `_Pooled` no longer needs). Each process draws the
same resamples from the sweep's seed (`draws`) and runs the same code: the numbers do not depend on where they ran.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

from cp_debug.eval.devkit import DIST_THS, MIN_PRECISION, MIN_RECALL


@lru_cache(maxsize=2)
def draws(n: int, seed: int | None, count: int) -> tuple[np.ndarray, ...]:
    """The bootstrap's `count` resamples of `n` frames (indices, repeats allowed), seeded: the same sweep gives the
    same intervals. Drawn once a process (a pool's process works out many (lane, key) pairs of one sweep); read,
    never written."""
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, n, n) for _ in range(count))


def laid_out(parts: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One (lane, key)'s frame tables (`metrics._tables`' (GT count, scores, TP flags) per frame) laid end to end:
    each frame's GT count and detection count, then all scores and all TP flags."""
    n = len(parts)
    npos = np.fromiter((p[0] for p in parts), np.int64, n)
    lens = np.fromiter((len(p[1]) for p in parts), np.int64, n)
    scores = np.concatenate([p[1] for p in parts]) if n else np.zeros(0)
    tp = np.concatenate([p[2] for p in parts]) if n else np.zeros((0, len(DIST_THS)), bool)
    return npos, lens, scores, tp


def frame_row(tables: dict, keys: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One lane's tables of one frame (`metrics._tables`) in `keys` order, laid end to end: the GT and detection
    count of each key, then the keys' scores and TP flags one after the other. Made as the frames come back
    (`metrics.MetricsAhead`), so that `Laid` is a few numpy calls after the last one."""
    parts = [tables[k] for k in keys]
    return (np.fromiter((p[0] for p in parts), np.int64, len(parts)),
            np.fromiter((len(p[1]) for p in parts), np.int64, len(parts)),
            np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))


class Laid:
    """One lane's `frame_row`s of every frame, in the frames' order, stacked once: any key's `laid_out` is then an
    index into them (issue 87: `laid_out` over each (lane, key) walked every frame's tables after the last frame,
    0.79 s of 6000 frames on the CPU machine, 0.13 s this way). The arrays are those `laid_out` gives."""

    def __init__(self, rows: Sequence[tuple], keys: Sequence):
        self.index = {k: i for i, k in enumerate(keys)}
        width = len(self.index)
        self.npos = np.stack([r[0] for r in rows]) if rows else np.zeros((0, width), np.int64)
        self.lens = np.stack([r[1] for r in rows]) if rows else np.zeros((0, width), np.int64)
        self.scores = np.concatenate([r[2] for r in rows]) if rows else np.zeros(0)
        self.tp = np.concatenate([r[3] for r in rows]) if rows else np.zeros((0, len(DIST_THS)), bool)
        flat = self.lens.reshape(-1)  # frame by frame, key by key: where each (frame, key)'s detections begin
        self.starts = (np.cumsum(flat) - flat).reshape(self.lens.shape)

    def size(self, key) -> int:
        """The key's detections over every frame."""
        return int(self.lens[:, self.index[key]].sum())

    def of(self, key) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`laid_out` of the key's parts, frame after frame."""
        k = self.index[key]
        lens = np.ascontiguousarray(self.lens[:, k])
        before = np.cumsum(lens) - lens  # where each frame's detections go in the key's arrays
        idx = np.repeat(self.starts[:, k] - before, lens) + np.arange(int(lens.sum()))
        return np.ascontiguousarray(self.npos[:, k]), lens, self.scores[idx], self.tp[idx]


def average_precision(npos: int, scores: np.ndarray, tp: np.ndarray) -> float:
    """Mean over the distance thresholds of the devkit's AP; nan where there is no ground truth."""
    if npos == 0:
        return math.nan
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    return _sorted_ap(npos, np.ascontiguousarray(tp[order].T))


def _sorted_ap(npos: int, tp: np.ndarray) -> float:
    """`average_precision` of detections already in descending score order: `tp` (thresholds, detections), their TP
    flags, one row per distance threshold. The cumulated counts are whole numbers, exact in float64, so the
    precision's denominator (TP + FP so far) is the detection's rank. They are summed as int32 (a seventh of the
    float64 sum's time) and divided as float64: the same quotients."""
    ctp = np.cumsum(tp, axis=1, dtype=np.int32)
    seen = np.arange(1, tp.shape[1] + 1, dtype=np.float64)
    grid = np.linspace(0, 1, 101)
    aps = []
    for k in range(tp.shape[0]):
        prec = ctp[k] / seen
        rec = ctp[k] / npos
        p = np.interp(grid, rec, prec, right=0)[round(100 * MIN_RECALL) + 1:]
        p = np.clip(p - MIN_PRECISION, 0, None)
        aps.append(float(np.mean(p)) / (1.0 - MIN_PRECISION))
    return float(np.mean(aps))


class _Pooled:
    """One lane's tables of one (class, bucket) over the swept frames, laid end to end once and sorted once, so that a
    bootstrap resample's AP is indexed out of them instead of concatenated and sorted from a thousand frames' parts
    (issue 71: the metrics over the set took 30 s of a 1000-frame awml-base sweep on an H100 host).

    A resample is a multiset of frames: its AP is that of the frames' detections, each repeated as often as its
    frame is drawn, in descending score order; detections of equal score (an FP16 candidate's scores tie by the
    thousand: 1364 distinct scores of 5458 detections of one tiny-preset class) in the order of their frame, then
    their place in it — the order the frames were drawn in changes nothing. That is the pooled order, sorted once,
    with each detection repeated, and what `_ap` gives from the frames' parts, to the last bit; NaN scores (where a
    sort's order of them is its own) are laid out in that order and sorted as `_ap` sorts."""

    def __init__(self, npos: np.ndarray, lens: np.ndarray, scores: np.ndarray, tp: np.ndarray):
        """`npos`, `lens`: each frame's ground-truth and detection counts; `scores`, `tp`: the frames' detections
        laid end to end (`laid_out`)."""
        n = len(npos)
        self.n, self.npos = n, npos
        self.frame = np.repeat(np.arange(n), lens)  # each detection's frame, in frame order
        self.scores, self.tp = scores, tp
        self.unsorted = bool(np.isnan(scores).any())
        if not self.unsorted:
            order = np.argsort(-scores, kind="stable")
            self.frame = self.frame[order]
            self.tp = np.ascontiguousarray(tp[order].T)  # (thresholds, detections), pooled order

    @classmethod
    def of(cls, parts: Sequence[tuple]) -> "_Pooled":
        return cls(*laid_out(parts))

    def ap(self, idx: np.ndarray) -> float:
        npos = int(self.npos[idx].sum())
        if npos == 0:
            return math.nan
        copies = np.bincount(idx, minlength=self.n)[self.frame]
        seq = np.repeat(np.arange(len(copies)), copies)  # the resample's detections, each copy next to the others
        if self.unsorted:
            return average_precision(npos, self.scores[seq], self.tp[seq])
        if not len(seq):
            return 0.0
        return _sorted_ap(npos, np.take(self.tp, seq, axis=1))  # row-major, as the cumulated sums read it


def _ap(tables: Sequence[dict], idx: np.ndarray, key) -> float:
    """The AP of the frames `idx` (a resample: repeats allowed) of one (class, bucket), from their parts laid out
    frame by frame, each detection repeated as often as its frame is drawn: what `_Pooled.ap` gives faster."""
    frames, counts = np.unique(np.asarray(idx, np.int64), return_counts=True)
    parts = [tables[i][key] for i in frames]
    npos = sum(p[0] * c for p, c in zip(parts, counts))
    if npos == 0:
        return math.nan
    scores = np.concatenate([np.repeat(p[1], c) for p, c in zip(parts, counts)]) if parts else np.zeros(0)
    tp = (np.concatenate([np.repeat(p[2], c, axis=0) for p, c in zip(parts, counts)]) if parts
          else np.zeros((0, len(DIST_THS)), bool))
    return average_precision(npos, scores, tp)


def resampled(npos: np.ndarray, lens: np.ndarray, scores: np.ndarray, tp: np.ndarray, seed: int | None,
              count: int, lo: int = 0, hi: int | None = None) -> tuple[float | None, list[float]]:
    """In a pool's process: one (lane, key)'s AP over every frame (None unless `lo` is 0) and over the sweep's
    resamples `lo` to `hi` (of `count`, drawn from `seed`: each process draws them all, the same ones)."""
    pooled = _Pooled(npos, lens, scores, tp)
    samples = draws(pooled.n, seed, count)[lo:hi]
    return (pooled.ap(np.arange(pooled.n)) if lo == 0 else None), [pooled.ap(s) for s in samples]


def chunks(sizes: dict, count: int, workers: int) -> list[tuple]:
    """(pair, lo, hi) parts of each pair's `count` resamples for a pool of `workers`, the largest first: a pair whose
    detections (`sizes`) are more than its share of the pool's work is cut into as many runs of resamples as that
    share goes into it (issue 87: one class's 200 resamples were the metrics' tail after a sweep's frames); with
    no resamples, one part (pair, 0, 0) for its AP over every frame."""
    total = sum(sizes.values()) or 1
    out = []
    for pair in sorted(sizes, key=lambda p: -sizes[p]):
        k = max(1, min(count, math.ceil(sizes[pair] * max(1, workers) / total)))
        step = max(1, math.ceil(count / k))
        # no resamples (`--bootstrap 0`): one part still works out the pair's AP over every frame
        out += [(pair, lo, min(count, lo + step)) for lo in range(0, max(count, 1), step)]
    return sorted(out, key=lambda part: -sizes[part[0]] * (part[2] - part[1]))


class Bootstrap:
    """The APs of a sweep's lanes over its `n` frames and over `count` resamples of them drawn from `seed`: each
    lane's frames laid out once (`Laid`, over the tables' `keys`, from `rows`: lane -> each frame's `frame_row` made
    as it came, or None), each (lane, key)'s tables pooled once (`_Pooled`) and each AP worked out once (the AP
    change per class and bucket and the chain's mAP share them)."""

    def __init__(self, tables: dict, n: int, seed: int | None, count: int, keys: Sequence,
                 rows: dict | None = None):
        self.tables, self.n, self.seed, self.count = tables, n, seed, count
        self.keys, self.rows = list(keys), rows or {}
        self.samples = draws(n, seed, count)
        self.laid: dict[str, Laid] = {}
        self.pooled: dict = {}
        self.resampled: dict = {}
        self.whole_ap: dict = {}

    def _laid(self, lane: str) -> Laid:
        """The lane's frames laid out, once (a frame's row made here where none came with it)."""
        if lane not in self.laid:
            rows = self.rows.get(lane) or [None] * len(self.tables[lane])
            self.laid[lane] = Laid([r if r is not None else frame_row(t, self.keys)
                                    for t, r in zip(self.tables[lane], rows)], self.keys)
        return self.laid[lane]

    def _pooled(self, lane: str, key) -> _Pooled:
        if (lane, key) not in self.pooled:
            self.pooled[lane, key] = _Pooled(*self._laid(lane).of(key))
        return self.pooled[lane, key]

    def whole(self, lane: str, key) -> float:
        """The AP over every frame."""
        if (lane, key) not in self.whole_ap:
            self.whole_ap[lane, key] = self._pooled(lane, key).ap(np.arange(self.n))
        return self.whole_ap[lane, key]

    def resamples(self, lane: str, key) -> list[float]:
        if (lane, key) not in self.resampled:
            pooled = self._pooled(lane, key)
            self.resampled[lane, key] = [pooled.ap(s) for s in self.samples]
        return self.resampled[lane, key]

    def warm(self, needed: list[tuple], processes=None, workers: int = 1) -> None:
        """The APs of `needed` ((lane, key) pairs, each once): in `processes` (a process pool of `workers`), a
        large pair's resamples cut into runs (`chunks`), the largest first, else on the shared thread pool. Each
        AP is a pure function of its tables and draws, so no number depends on where it was worked out."""
        lanes = {lane: self._laid(lane) for lane in dict.fromkeys(lane for lane, _ in needed)}  # before any thread
        if processes is not None:
            size = {(lane, key): lanes[lane].size(key) + 1 for lane, key in needed}
            laid = {(lane, key): lanes[lane].of(key) for lane, key in needed}
            futures = [(pair, lo, processes.submit(resampled, *laid[pair], self.seed, self.count, lo, hi))
                       for pair, lo, hi in chunks(size, self.count, workers)]
            runs: dict = {pair: [] for pair in needed}
            for pair, lo, fut in futures:
                whole, aps = fut.result()
                runs[pair].append((lo, aps))
                if whole is not None:
                    self.whole_ap[pair] = whole
            for pair, parts in runs.items():  # each pair's resamples in their order
                self.resampled[pair] = [ap for _, aps in sorted(parts, key=lambda part: part[0]) for ap in aps]
            return
        from cp_debug.parallel import run_parts, split, thread_count

        def work(lo: int, hi: int) -> None:
            for lane, key in needed[lo:hi]:
                self.resamples(lane, key)

        run_parts(work, split(len(needed), thread_count()))

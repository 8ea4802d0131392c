"""Ranking and classes on hand-made frame results; the bootstrap's AP against nuscenes-devkit's own."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cp_debug.sweep.rank import LOCAL_FACTOR, rank_frames
from cp_debug.recipes import catalog
from cp_debug.sweep.records import CandidateFrame, DetectionDelta, FrameResult, ProbeStat

CP = catalog.recipe()  # the default recipe, CenterPoint (the command line resolves it)

PROBES = ("a", "b", "c")


def _frame(i: int, errors, lost: int = 0, status: str = "diverged") -> FrameResult:
    if status == "failed":
        return FrameResult(i, f"f{i}", "failed", "OSError: cannot read")
    probes = tuple(ProbeStat(p, k, e, e, 1.0, e, 0, 0, "diverged") for k, (p, e) in enumerate(zip(PROBES, errors)))
    d = DetectionDelta(10, 10 - lost, 10 - lost, lost, 0, 0.0, 0.0, 0.0, 0.0, lost > 0)
    return FrameResult(i, f"f{i}", status, None, 100, (CandidateFrame("cand", probes, d, True),))


def test_a_jump_at_one_probe_is_local_and_named_where_it_starts():
    noise = [(1e-3, 2e-3, 4e-3), (1.1e-3, 2.1e-3, 4.2e-3), (0.9e-3, 1.9e-3, 3.9e-3), (1e-3, 2e-3, 4e-3)]
    results = [_frame(i, e) for i, e in enumerate(noise)]
    results.append(_frame(4, (1e-3, 5e-2, 9e-2)))  # b jumps 25x, c inherits it
    results.append(_frame(5, (1e-3, 2e-3, 4e-3), lost=1))  # a borderline box flips on noise
    results.append(_frame(6, (), status="failed"))
    ranked, spread = rank_frames(results)
    assert [r.token for r in ranked][:2] == ["f5", "f4"]  # detection change first, then the worst probe
    assert ranked[-1].token == "f6" and ranked[-1].status == "failed"
    by = {r.token: r for r in ranked}
    assert by["f4"].klass == "local" and by["f4"].worst.local_probe == "b"
    assert by["f5"].klass == "uniform" and all(by[f"f{i}"].klass == "uniform" for i in range(4))
    assert spread[("cand", "b")].worst[0] == "f4"
    assert by["f4"].worst.worst_ratio >= LOCAL_FACTOR


def test_a_usually_exact_probe_does_not_turn_rounding_into_a_fault():
    results = [_frame(i, (0.0, 1e-3, 1e-3)) for i in range(4)] + [_frame(4, (3e-7, 1e-3, 1e-3))]
    ranked, _ = rank_frames(results)
    assert all(r.klass == "uniform" for r in ranked)


def test_bootstrap_ap_is_the_devkits_ap():
    pytest.importorskip("nuscenes")
    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.devkit import evaluate
    from cp_debug.lidar.space import CLASS_NAMES
    from cp_debug.sweep.bootstrap import _ap
    from cp_debug.sweep.metrics import _tables

    rng = np.random.default_rng(3)
    gt, det, tables = {}, {}, []
    for t in range(6):
        k = 8
        boxes = np.zeros((k, 9))
        boxes[:, :2] = rng.uniform(-40, 40, (k, 2))
        boxes[:, 3:6] = [4.0, 2.0, 1.5]
        labels = rng.integers(0, 2, k)
        noisy = boxes.copy()
        noisy[:, :2] += rng.normal(0, 0.8, (k, 2))
        scores = rng.uniform(0.1, 1.0, k)
        gt[f"t{t}"] = SampleBoxes(boxes, labels)
        det[f"t{t}"] = SampleBoxes(noisy, labels, scores)
        tables.append(_tables({"boxes": boxes, "labels": labels, "num_points": None},
                              {"boxes": noisy, "scores": scores, "labels": labels}, len(CLASS_NAMES)))
    ours = {CLASS_NAMES[c]: _ap(tables, np.arange(6), (c, "all")) for c in range(2)}
    theirs = {c.name: c.ap for c in evaluate(gt, det, CLASS_NAMES).per_class}
    for name, ap in ours.items():
        assert math.isclose(ap, theirs[name], abs_tol=1e-9), (name, ap, theirs[name])


@pytest.mark.parametrize("ties", [False, True])
def test_the_pooled_bootstrap_ap_is_the_frames_ap_to_the_last_bit(ties):
    """`_Pooled.ap` (the resample indexed out of the frames laid end to end once) against `_ap` (the resample's
    parts repeated, concatenated and sorted): equal to the bit, on resamples with repeats, with scores that tie across
    and within frames and without, with a NaN score (the unsorted layout), and where a resample draws no detection;
    and a resample's AP is its multiset's: the order of the draws changes nothing, ties included."""
    from cp_debug.sweep.bootstrap import _ap, _Pooled
    from cp_debug.sweep.metrics import _tables

    rng = np.random.default_rng(11)
    tables = []
    for _ in range(40):
        k = int(rng.integers(0, 9))
        boxes = np.zeros((k, 9))
        boxes[:, :2] = rng.uniform(-40, 40, (k, 2))
        noisy = boxes.copy()
        noisy[:, :2] += rng.normal(0, 1.5, (k, 2))
        noisy[k // 2:, :2] = rng.uniform(-40, 40, (k - k // 2, 2))
        scores = np.round(rng.uniform(0.1, 1.0, k), 1) if ties else rng.uniform(0.1, 1.0, k)
        labels = np.zeros(k, np.int64)
        tables.append(_tables({"boxes": boxes, "labels": labels, "num_points": None},
                              {"boxes": noisy, "scores": scores, "labels": labels}, 1))
    key = (0, "all")
    pooled = _Pooled.of([t[key] for t in tables])
    scores = np.concatenate([t[key][1] for t in tables])
    assert (len(np.unique(scores)) < len(scores)) == ties
    draws = [rng.integers(0, 40, 40) for _ in range(60)] + [np.arange(40), np.zeros(3, np.int64)]
    empty = [t for t in range(40) if len(tables[t][key][1]) == 0 and tables[t][key][0] > 0]
    if empty:
        draws.append(np.asarray(empty[:1] * 5))
    nan = [dict(t) for t in tables]
    k = next(i for i, t in enumerate(tables) if len(t[key][1]))
    nan[k][key] = (tables[k][key][0], np.r_[np.nan, tables[k][key][1][1:]], tables[k][key][2])
    unsorted = _Pooled.of([t[key] for t in nan])
    for idx in draws:
        ours, theirs = pooled.ap(idx), _ap(tables, idx, key)
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == theirs, (idx, ours, theirs)
        shuffled = rng.permutation(idx)
        again = pooled.ap(shuffled)
        assert (math.isnan(ours) and math.isnan(again)) or again == ours, (idx, ours, again)
        ours, theirs = unsorted.ap(idx), _ap(nan, idx, key)
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == theirs, (idx, ours, theirs)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_the_metrics_worked_out_in_processes_are_the_ones_worked_out_here(monkeypatch):
    """A host with cores to spare works the devkit's evaluation out frame by frame in a process pool (`devkit_lanes`:
    each frame matched there, each lane summed up after the last one) and the bootstrap's (lane, key) pairs there too:
    the same metrics block, key by key, as in this process (`evaluate` of each lane, the devkit's own `accumulate`;
    the bootstrap on threads); a lane the devkit refuses (a NaN box) is its one-line reason either way."""
    pytest.importorskip("nuscenes")
    import json
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from cp_debug.sweep import metrics
    from cp_debug.sweep.metrics import frame_tables, sweep_metrics
    from cp_debug.sweep.records import FrameResult, SweepSettings

    rng = np.random.default_rng(5)
    settings = SweepSettings(("torch", "ort-cpu-fp16", "ort-cpu"), preset="demo", recipe=CP)
    frames = []
    for i in range(12):
        k = 14
        gt = np.zeros((k, 9))
        gt[:, :2] = rng.uniform(-40, 40, (k, 2))
        gt[:, 3:6] = rng.uniform(1, 4, (k, 3))
        labels = rng.integers(0, 4, k)  # no pedestrian: a class not evaluated
        labels[:6] = 0  # cars, the most
        lanes = {}
        for lane in settings.backends:
            d = gt.copy()
            d[:, :2] += rng.normal(0, 0.7, (k, 2))
            d[:, 6] = rng.normal(0, 0.2, k)
            if lane == "ort-cpu" and i == 3:
                d[0, 0] = np.nan
            scores = np.round(rng.uniform(0, 1, k), 1)  # ties, within frames and across them
            lanes[lane] = {"boxes": d.tolist(), "labels": labels.tolist(), "scores": scores.tolist()}
        frames.append(FrameResult(i, f"t{i}", "within_precision", boxes=lanes,
                                  gt={"boxes": gt.tolist(), "labels": labels.tolist(),
                                      "num_points": rng.integers(0, 3, k).tolist()}))
    tables = {r.token: frame_tables(r, list(settings.backends), 5) for r in frames}

    class Ahead:  # what a sweep's `MetricsAhead` hands over: the tables, and its pool on a many-core host
        def __init__(self, pool=None, workers=0):
            self.processes, self.workers, self.samples, self.laid = pool, workers, {}, {}

        def done(self):
            return tables

        def matches(self):  # no frame matched while the frames ran (a resumed sweep's): all matched at the end
            return None

    here = sweep_metrics(frames, settings, bootstrap=40, ahead=Ahead())
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        apart = sweep_metrics(frames, settings, bootstrap=40, ahead=Ahead(pool, 64))
    assert json.dumps(apart, sort_keys=True) == json.dumps(here, sort_keys=True)
    # no resamples (`--bootstrap 0`, a many-core host): the pool still works out each AP over every frame
    # (range() with a step of 0 raised on a 16-core machine)
    none_here = sweep_metrics(frames, settings, bootstrap=0, ahead=Ahead())
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        none_apart = sweep_metrics(frames, settings, bootstrap=0, ahead=Ahead(pool, 64))
    assert json.dumps(none_apart, sort_keys=True) == json.dumps(none_here, sort_keys=True)
    # a sweep's `MetricsAhead` on such a host: each frame matched in the pool as it comes back (the last frame not
    # through it, as a resumed one: matched after), the same block again
    monkeypatch.setattr(metrics, "MATCH_BATCH", 4)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        ahead = metrics.MetricsAhead(settings)
        ahead.processes, ahead.workers = pool, 64
        for r in frames[:-1]:
            ahead.add(r)
        ahead.done()  # the helper has worked out what it was given
        assert len(ahead._matched) == 2 and len(ahead.samples) == len(frames) - 1  # two batches of four
        assert set(ahead.laid) == {r.token for r in frames[:-1]}  # laid out for the bootstrap as they came
        try:
            streamed = sweep_metrics(frames, settings, bootstrap=40, ahead=ahead)
            matched = ahead.matches()
        finally:
            ahead.processes = None
            ahead.close()
    assert json.dumps(streamed, sort_keys=True) == json.dumps(here, sort_keys=True)
    cars = int(np.sum(np.asarray(frames[0].gt["labels"]) == 0))
    assert set(matched["torch"]) == {r.token for r in frames[:-1]} and matched["ort-cpu"]["t3"] is None
    assert len(matched["torch"]["t0"][0].scores) == cars
    dk = here["devkit"]
    assert "NaN" in dk["ort-cpu"]["error"] and dk["torch"]["not_evaluated"] == ["pedestrian"]
    assert dk["torch"]["mAP"] > 0 and here["ap_change"]["ort-cpu-fp16"]["car"]["all"]["ci"] is not None


def test_frames_laid_out_as_they_come_are_what_laid_out_gives():
    """The pool's bootstrap reads each (lane, key)'s frames end to end: `Laid`, stacked from the rows made as the
    frames came back, gives `laid_out`'s arrays of every key — frames without a detection of a key, frames without
    any, and no frame at all included."""
    from cp_debug.sweep.bootstrap import Laid, frame_row, laid_out

    rng = np.random.default_rng(2)
    keys = [(c, b) for c in range(3) for b in ("all", "0-20m")]
    frames = []
    for f in range(40):
        sizes = [0] * len(keys) if f % 9 == 0 else rng.integers(0, 5, len(keys))
        frames.append({k: (int(rng.integers(0, 3)), rng.uniform(size=n), rng.uniform(size=(n, 4)) < 0.5)
                       for k, n in zip(keys, sizes)})
    laid = Laid([frame_row(t, keys) for t in frames], keys)
    for k in keys:
        want = laid_out([t[k] for t in frames])
        got = laid.of(k)
        assert [a.dtype for a in got] == [a.dtype for a in want]
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
        assert laid.size(k) == len(want[2])
    assert [a.shape for a in Laid([], keys).of(keys[0])] == [a.shape for a in laid_out([])]

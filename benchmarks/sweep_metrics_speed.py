"""Issue 71: the metrics over a swept set (sweep/metrics.sweep_metrics: nuscenes-devkit mAP/NDS per lane and the
bootstrap of each candidate's AP change), timed alone on synthetic frames shaped like a random-weight awml-base sweep
(100 ground-truth boxes and 100 detections a frame, five classes, two lanes), for this tree and any `--tree` given,
side by side in one run, with a digest of the metrics block (the same digest: the same numbers).

    python benchmarks/sweep_metrics_speed.py [--frames 1000] [--processes N] [--ties] [--skewed] [--tree OLD ...]

`--processes N`: the devkit's evaluation and the bootstrap's pairs in a pool of N spawned processes, as a sweep on a
host of 8 or more cores runs them (0: in this process, as on a smaller host); `--part bootstrap` leaves the devkit
out (the bootstrap alone). `--ties`: scores rounded to 0.01, so detections share scores (the bootstrap's exact,
slower layout). `--skewed`: the real sweep's class mix (`SKEWED`: 87 ground-truth boxes and 100 detections a frame,
most of these bus and bicycle), where a class a process left one class as the tail.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# per class (car, truck, bus, bicycle, pedestrian): ground-truth boxes and detections a frame of the 1000-frame
# awml-base sweep of random weights on the H200 host (issue 71, 2026-11-27): most detections in two classes
SKEWED = ((46, 2), (13, 0), (9, 55), (7, 41), (12, 2))


def _frames(n: int, ties: bool, per: int = 100, skewed: bool = False):
    import numpy as np

    from cp_debug.sweep.records import FrameResult

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        g = np.zeros((per, 9))
        g[:, :2] = rng.uniform(-120, 120, (per, 2))
        g[:, 3:6] = rng.uniform(1, 5, (per, 3))
        labels = rng.integers(0, 5, per)
        lanes = {}
        for lane, shift in (("torch-cuda", 0.0), ("ort-cuda-fp16", 0.003)):
            r = np.random.default_rng(i)
            d = g.copy()
            d[:, :2] += r.normal(0, 1.0, (per, 2)) + shift
            d[per // 2:, :2] = r.uniform(-120, 120, (per - per // 2, 2))  # half of them false positives
            scores = r.uniform(0.1, 1, per).astype(np.float32) + np.float32(shift)
            if ties:
                scores = np.round(scores, 2)
            found = labels
            if skewed:  # the class mix of a real sweep: labels set by class count, the detections' apart
                found = np.repeat(np.arange(5), [c[1] for c in SKEWED])[:per]
                d = np.resize(d, (len(found), 9))
                scores = np.resize(scores, len(found))
            lanes[lane] = {"boxes": d.tolist(), "labels": found.tolist(), "scores": scores.tolist()}
        truth = np.repeat(np.arange(5), [c[0] for c in SKEWED])[:per] if skewed else labels
        out.append(FrameResult(i, f"f{i}", "within_precision", boxes=lanes,
                               gt={"boxes": g[:len(truth)].tolist(), "labels": truth.tolist()}))
    return out


def child(frames: int, processes: int, ties: bool, part: str, skewed: bool = False, no_ahead: bool = False) -> None:
    import hashlib

    from cp_debug.sweep import metrics
    from cp_debug.recipes import catalog
    from cp_debug.sweep.records import SweepSettings

    settings = SweepSettings(("torch-cuda", "ort-cuda-fp16"), preset="awml-base", recipe=catalog.recipe())
    results = _frames(frames, ties, skewed=skewed)
    tables = {r.token: metrics.frame_tables(r, list(settings.backends), 5) for r in results}

    class Ahead:  # the tables (and, with a pool, the devkit's work) a sweep does while its frames run
        def __init__(self):
            self.processes, self.workers, self.ready, self.samples, self.laid = None, 0, None, {}, {}

        def done(self):
            return tables

        def matches(self):  # this tree: each frame's devkit matching (sweep/devkit_lanes.py)
            return self.ready

        def rows(self):  # trees before it: each frame's devkit distances (eval/devkit_rows.py)
            return self.ready

    ahead = Ahead()
    if hasattr(metrics, "frame_samples"):  # each frame's boxes made as it came, as a sweep's MetricsAhead does
        ahead.samples = {r.token: metrics.frame_samples(r, list(settings.backends)) for r in results}
    if processes and hasattr(metrics, "table_keys"):  # each frame's tables laid out as it came (the pool's bootstrap)
        from cp_debug.sweep.bootstrap import frame_row

        keys = metrics.table_keys(5)
        ahead.laid = {token: {lane: frame_row(t[lane], keys) for lane in t} for token, t in tables.items()}
    if processes and part == "all":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # each process imports the devkit as it starts (a task may go to a process that has it already)
        ahead.processes = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=metrics._import_devkit)
        ahead.workers = processes
        for f in [ahead.processes.submit(int) for _ in range(processes)]:
            f.result()
        work = None if no_ahead else _ahead_work(settings, ahead.samples, results)
        if work is not None:
            t0 = time.perf_counter()
            futures = [ahead.processes.submit(work, batch) for batch in _batches(results, ahead.samples, 32)]
            ahead.ready = {lane: {} for lane in settings.backends}
            for f in futures:
                for lane, by_token in f.result().items():
                    ahead.ready[lane].update(by_token)
            print(f"the devkit's work done ahead (while a sweep's frames run): {time.perf_counter() - t0:.2f} s "
                  f"({len(futures)} tasks)", file=sys.stderr)
    if part == "bootstrap":
        metrics._devkit = lambda *a, **k: {}
    metrics._import_devkit()  # as a sweep's MetricsAhead has it imported while its frames run
    phases = _timed_phases(metrics)
    t0 = time.perf_counter()
    block = metrics.sweep_metrics(results, settings, ahead=ahead)
    seconds = time.perf_counter() - t0
    print("phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()), file=sys.stderr)
    digest = hashlib.sha256(json.dumps(block, sort_keys=True).encode()).hexdigest()[:16]
    print(json.dumps({"seconds": seconds, "digest": digest}))


def _ahead_work(settings, samples: dict, results: list):
    """What the tree's `MetricsAhead` hands its pool per batch of frames, as a callable of the batch: each frame's
    devkit matching (`devkit_lanes.frames_matches`), or in trees before it the devkit's distances
    (`devkit_rows.frames_rows`); None for a tree with neither."""
    import functools

    from cp_debug.eval.devkit import default_range

    cfg = settings.config()
    try:
        from cp_debug.sweep.devkit_lanes import frames_matches

        return functools.partial(_matched, frames_matches, tuple(cfg.class_names),
                                 default_range(cfg.point_cloud_range))
    except ImportError:
        pass
    try:
        from cp_debug.eval.devkit_rows import frames_rows, sample_input
    except ImportError:
        return None
    return functools.partial(_rowed, frames_rows, sample_input, len(cfg.class_names))


def _matched(frames_matches, names, reach, batch):
    return frames_matches(batch, names, reach)


def _rowed(frames_rows, sample_input, n_classes, batch):
    return frames_rows([(token, *sample_input(gt, dets)) for token, gt, dets in batch], n_classes)


def _batches(results: list, samples: dict, size: int) -> list:
    made = [(r.token, *samples[r.token]) for r in results]
    return [made[i:i + size] for i in range(0, len(made), size)]


def _timed_phases(metrics) -> dict:
    """Seconds of the metrics' phases on the caller's thread: the devkit's work prepared and handed to the pool, its
    parts waited for (this tree: its lanes summed up, on a thread beside the bootstrap), and the bootstrap's pairs
    (`Bootstrap.warm`)."""
    from cp_debug.sweep import bootstrap

    phases: dict = {}

    def timed(owner, name, label):
        inner = getattr(owner, name)

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - t
        setattr(owner, name, wrapper)

    timed(metrics, "_devkit", "devkit prepared and handed over")
    timed(bootstrap.Bootstrap, "warm", "bootstrap pairs")
    try:
        from cp_debug.sweep import devkit_parts
    except ImportError:  # this tree: each lane summed up from its frames' matching on a thread, beside the bootstrap
        from cp_debug.sweep import devkit_lanes

        timed(devkit_lanes, "_lane", "devkit lanes summed up (a thread)")
    else:
        timed(devkit_parts.LaneParts, "result", "devkit parts waited for")
    return phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=0)
    ap.add_argument("--ties", action="store_true")
    ap.add_argument("--skewed", action="store_true", help="the class mix of a real random-weight awml-base sweep")
    ap.add_argument("--part", choices=("all", "bootstrap"), default="all")
    ap.add_argument("--no-ahead", action="store_true", help="none of the devkit's work done while frames run (a "
                    "resumed sweep's case)")
    ap.add_argument("--tree", action="append", default=[], help="another checkout, run the same way")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.frames, args.processes, args.ties, args.part, args.skewed, args.no_ahead)
        return
    rows = []
    for tree in [str(ROOT), *args.tree]:
        cmd = [sys.executable, __file__, "--child", "--frames", str(args.frames), "--processes", str(args.processes),
               "--part", args.part, *(["--ties"] if args.ties else []), *(["--skewed"] if args.skewed else []),
               *(["--no-ahead"] if args.no_ahead else [])]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, *filter(None, [os.environ.get("PYTHONPATH")])]))
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        sys.stderr.write(done.stderr)
        rows.append((tree, json.loads(done.stdout.strip().splitlines()[-1])))
    base = rows[0][1]["seconds"]
    print(f"sweep_metrics over {args.frames} frames, part {args.part}, processes {args.processes}, "
          f"{'tied' if args.ties else 'distinct'} scores, {'skewed' if args.skewed else 'even'} classes, "
          f"{os.cpu_count()} CPUs")
    for tree, r in rows:
        print(f"  {tree}: {r['seconds']:.2f} s ({r['seconds'] / base:.2f}x this tree's), digest {r['digest']}")
    same = len({r['digest'] for _, r in rows}) == 1
    print(f"  the same metrics block in every tree: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

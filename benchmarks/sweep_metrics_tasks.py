"""Issue 87: the work a sweep's metrics do after the last frame on a host with cores to spare — the bootstrap's
runs of resamples handed to the process pool, each run alone in this process and timed, with the first-in-first-out
schedule of those times on N processes, and each lane's devkit figures summed up from its frames' matching (on a
thread beside them) — and, apart, the devkit's matching the pool does while the frames run, per frame.

    python benchmarks/sweep_metrics_tasks.py [--frames 1000] [--workers 16]

Frames are `sweep_metrics_speed.py`'s skewed ones (a random-weight awml-base sweep's class mix); each frame's boxes
made as it came.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class _Timed:
    """A stand-in for the pool that runs each task at once, here, and keeps (task name, seconds)."""

    def __init__(self):
        self.tasks: list[tuple[str, float]] = []

    def submit(self, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        self.tasks.append((fn.__name__, time.perf_counter() - t0))

        class Done:
            def result(self):
                return result

        return Done()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()

    from sweep_metrics_speed import _frames

    from cp_debug.eval.devkit import default_range
    from cp_debug.recipes import catalog
    from cp_debug.sweep import bootstrap, metrics
    from cp_debug.sweep.devkit_lanes import frames_matches
    from cp_debug.sweep.records import SweepSettings

    metrics._import_devkit()
    settings = SweepSettings(("torch-cuda", "ort-cuda-fp16"), preset="awml-base", recipe=catalog.recipe())
    lanes, cfg = list(settings.backends), settings.config()
    n_classes = len(cfg.class_names)
    results = _frames(args.frames, False, skewed=True)
    samples = {r.token: metrics.frame_samples(r, lanes) for r in results}
    t0 = time.perf_counter()
    matched = frames_matches([(r.token, *samples[r.token]) for r in results], tuple(cfg.class_names),
                             default_range(cfg.point_cloud_range))
    ahead = time.perf_counter() - t0
    pool = _Timed()
    t0 = time.perf_counter()
    for lane in metrics._devkit(results, lanes, cfg, pool, args.workers, matched, samples).values():
        lane.result()
    summed = time.perf_counter() - t0
    tables = {r.token: metrics.frame_tables(r, lanes, n_classes) for r in results}
    keys = metrics.table_keys(n_classes)
    boot = bootstrap.Bootstrap({b: [tables[r.token][b] for r in results] for b in lanes}, len(results), 0, 200, keys)
    gt = {k: sum(tables[r.token][lanes[0]][k][0] for r in results) for k in keys}
    boot.warm(sorted({(lane, k) for k in keys if gt[k] for lane in lanes}
                     | {(lane, (c, "all")) for lane in lanes for c in range(n_classes)}), pool, args.workers)
    spent = Counter()
    for name, seconds in pool.tasks:
        spent[name] += seconds
    free = [0.0] * args.workers
    for _, seconds in pool.tasks:  # handed out in the order submitted, each to the first process free
        heapq.heappush(free, heapq.heappop(free) + seconds)
    total = sum(spent.values())
    print(f"{args.frames} frames: {len(pool.tasks)} tasks, {total:.1f} CPU-s "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in spent.items())}); longest "
          f"{', '.join(f'{s:.2f} s ({n})' for n, s in sorted(pool.tasks, key=lambda t: -t[1])[:4])}")
    print(f"first-in-first-out on {args.workers} processes: {max(free):.2f} s (the work shared out evenly: "
          f"{total / args.workers:.2f} s)")
    print(f"the devkit's lanes summed up from their frames' matching: {summed:.2f} s (a thread, beside the pool)")
    print(f"while the frames run: the devkit's matching {ahead:.1f} CPU-s, "
          f"{1000 * ahead / len(results):.1f} ms a frame ({len(lanes)} lanes)")


if __name__ == "__main__":
    main()

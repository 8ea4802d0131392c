"""A frame's metrics tables (`sweep/metrics._tables`, every class × distance bucket's true-positive flags) with the
devkit's greedy matching compiled (`eval/greedy.py`) against the same loop in numpy, side by side in one run:

    python benchmarks/frame_tables_speed.py [--frames 50] [--dets 100] [--gt 87]

The frames are made here like a random-weight awml-base sweep's (issue 87's profile: ~100 detections and ~87 ground-
truth boxes a frame, most in two classes). Prints ms a frame for each and their ratio, and checks the tables equal.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--dets", type=int, default=100)
    ap.add_argument("--gt", type=int, default=87)
    args = ap.parse_args()
    from cp_debug.eval import greedy
    from cp_debug.sweep import metrics

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(args.frames):
        gb, gl = rng.uniform(-50, 50, (args.gt, 9)), rng.choice([0, 9], args.gt)
        db = gb[rng.integers(0, args.gt, args.dets)] + rng.normal(0, 1, (args.dets, 9))
        frames.append(({"boxes": gb, "labels": gl},
                       {"boxes": db, "scores": rng.uniform(0, 1, args.dets), "labels": rng.choice([0, 9], args.dets)}))
    timed = {}
    for name, match in (("numpy loop", greedy.true_positives_numpy), ("compiled", greedy.true_positives)):
        metrics.true_positives = match
        metrics._tables(*frames[0], 10)  # the kernel compiled (or read from numba's cache) first
        t0 = time.perf_counter()
        tables = [metrics._tables(g, d, 10) for g, d in frames]
        timed[name] = ((time.perf_counter() - t0) / len(frames), tables)
    metrics.true_positives = greedy.true_positives
    same = all(np.array_equal(a[k][2], b[k][2]) for a, b in zip(timed["numpy loop"][1], timed["compiled"][1])
               for k in a)
    old, new = timed["numpy loop"][0], timed["compiled"][0]
    print(f"{args.frames} frames, {args.dets} detections and {args.gt} boxes each: numpy loop {old * 1e3:.2f} ms a "
          f"frame, compiled {new * 1e3:.2f} ms ({old / new:.1f}x); tables {'equal' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()

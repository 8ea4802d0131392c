"""Issue 71: where the metrics step of a finished sweep folder goes, on its real frames: the shards read, the frames'
TP tables, each lane's classes (detections, distinct scores: an FP16 candidate's tie), then `sweep_metrics` with a
warm process pool as a sweep on a host of 8 or more cores runs it (each frame's devkit matching done first, as a
sweep does while its frames run), and its two parts alone (the bootstrap, the devkit's lanes summed up).

    python benchmarks/sweep_metrics_folder.py OUT_DIR [--processes N]

`--processes`: the pool's size (default: what a sweep on this host starts, `metrics.MAX_PROCESSES` at most).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    import numpy as np

    from cp_debug.recipes import catalog
    from cp_debug.sweep import metrics
    from cp_debug.sweep.bootstrap import _Pooled
    from cp_debug.sweep.records import SweepSettings
    from cp_debug.sweep.shards import ShardStore

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--processes", type=int, default=0)
    args = ap.parse_args()
    workers = args.processes or max(1, min(metrics.MAX_PROCESSES, len(os.sched_getaffinity(0)) - 2))
    st = json.loads((Path(args.out) / "manifest.json").read_text())["settings"]
    settings = SweepSettings(tuple(st["backends"]), preset=st["preset"], recipe=catalog.recipe(st.get("recipe")),
                             seed=st.get("seed"))
    t0 = time.perf_counter()
    results = ShardStore(args.out).results()
    print(f"{len(results)} frames, shards read in {time.perf_counter() - t0:.2f} s")
    lanes, n_classes = list(settings.backends), len(settings.config().class_names)
    t0 = time.perf_counter()
    tables = {r.token: metrics.frame_tables(r, lanes, n_classes) for r in results}
    print(f"tables {time.perf_counter() - t0:.2f} s (in a sweep: made as the frames come back)")
    usable = [r for r in results if tables.get(r.token)]
    for lane in lanes:
        for c in range(n_classes):
            pooled = _Pooled.of([tables[r.token][lane][(c, "all")] for r in usable])
            if len(pooled.scores):
                print(f"  {lane} class {c}: {len(pooled.scores)} detections, "
                      f"{len(np.unique(pooled.scores))} distinct scores")

    class Ahead:  # what a sweep's MetricsAhead hands over: the tables, the devkit's matching worked out ahead
        def __init__(self, pool):
            self.processes, self.workers, self.samples = pool, workers, {}

        def done(self):
            return tables

        def matches(self):
            return matched

    metrics._import_devkit()  # as a sweep's MetricsAhead does, here and in each process, while the frames run
    with metrics.process_pool(workers) as pool:
        for f in [pool.submit(int) for _ in range(workers)]:
            f.result()
        from cp_debug.eval.devkit import default_range
        from cp_debug.sweep.devkit_lanes import frames_matches

        cfg = settings.config()
        names, reach = tuple(cfg.class_names), default_range(cfg.point_cloud_range)
        t0 = time.perf_counter()
        batch = [(r.token, *metrics.frame_samples(r, lanes)) for r in usable]
        matched = {lane: {} for lane in lanes}
        for f in [pool.submit(frames_matches, batch[i:i + 32], names, reach) for i in range(0, len(batch), 32)]:
            for lane, by_token in f.result().items():
                matched[lane].update(by_token)
        print(f"the devkit's matching (a sweep does it while its frames run): {time.perf_counter() - t0:.2f} s")
        t0 = time.perf_counter()
        metrics.sweep_metrics(results, settings, ahead=Ahead(pool))
        print(f"metrics, a warm pool of {workers}: {time.perf_counter() - t0:.2f} s")
        devkit = metrics._devkit
        metrics._devkit = lambda *a, **k: {}
        t0 = time.perf_counter()
        metrics.sweep_metrics(results, settings, ahead=Ahead(pool))
        print(f"  the bootstrap alone: {time.perf_counter() - t0:.2f} s")
        metrics._devkit = devkit
        t0 = time.perf_counter()
        parts = metrics._devkit(usable, lanes, settings.config(), pool, workers, matched)
        for v in parts.values():
            if hasattr(v, "result"):
                v.result()
        print(f"  the devkit alone: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()

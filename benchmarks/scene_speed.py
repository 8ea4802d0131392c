"""Making a held-out synthetic scene (`data.scenes.make_scene`, what every held-out, calibration and training frame
is): ms of one core per frame, the first version (f2ea795) beside this one in the same run, and a check that both
give the same bytes.

    python benchmarks/scene_speed.py [--presets demo,awml-base,convnextpc-demo] [--frames 20]
    python benchmarks/scene_speed.py --check [--seeds 50]
    python benchmarks/scene_speed.py --gil [--presets awml-base]

The old generator is `cp_debug/data/scenes.py` as of `--old-ref` (default f2ea795), read with `git show` from this
repository, or from `--old DIR` (a folder holding cp_debug/data/scenes.py, e.g. made by
`git archive f2ea795 cp_debug/data/scenes.py | tar -x -C DIR`) where there is no git history, as on the GPU machine.
It is loaded beside this version's (it imports nothing else of cp_debug that changed).

1. Speed: per preset, each seed made by the old and then the new generator, interleaved; the median CPU time of
   the making thread (ms of one core) and the median wall time per frame. Target (issue 32): awml-base well
   under 50 ms, aim <= 25 ms.
2. --check: points, boxes and labels of held-out, training and far held-out (INT8 calibration) seeds, per
   preset, byte-equal between old and new (np.array_equal and the raw bytes); the new scenes are made on
   `--threads` threads at once, as the sweep reads ahead. Exit 1 on any difference. BLAS rounding depends on the
   machine: run it where the scenes are used (the CPU machine and the GPU host).
3. --gil: the share of a scene's making that holds the GIL (a pure-Python counter in the main thread runs while
   another thread makes scenes; the counter's slowdown is the share), i.e. how far the sweep's read-ahead threads
   (`recipes/centerpoint/sweep/worker.py` FRAMES_AHEAD) run beside the lanes' Python work. Needs two free cores to
   mean anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENES = "cp_debug/data/scenes.py"
PRESETS = "demo,awml-base,convnextpc-demo"


def old_scenes(old: str | None, ref: str):
    """The old `cp_debug.data.scenes` module, loaded under another name."""
    if old is not None:
        path = Path(old)
        path = path if path.is_file() else path / SCENES
        source = path.read_text()
    else:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{SCENES}"], check=True,
                                capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"_scenes_{ref}", f.name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    Path(f.name).unlink()
    return module


def seeds(n: int) -> list[int]:
    """n held-out seeds, then n // 5 training seeds and n // 5 far held-out (INT8 calibration) seeds."""
    from cp_debug.data.frames import CALIBRATION_SEED_OFFSET
    from cp_debug.data.scenes import HELDOUT_SEED_BASE

    extra = max(n // 5, 1)
    return ([HELDOUT_SEED_BASE + k for k in range(n)] + list(range(extra))
            + [HELDOUT_SEED_BASE + CALIBRATION_SEED_OFFSET + k for k in range(extra)])


def check(old, presets: list[str], n: int, threads: int) -> int:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from cp_debug.data.scenes import make_scene
    from cp_debug.models.centerpoint.presets import get_preset

    bad = 0
    for preset in presets:
        cfg = get_preset(preset)
        picked = seeds(n)
        with ThreadPoolExecutor(threads) as pool:  # the new ones made as the sweep's read-ahead makes them
            made = pool.map(make_scene, [cfg] * len(picked), picked)
            for seed, b in zip(picked, made):
                a = old.make_scene(cfg, seed)
                same = all(np.array_equal(x, y) and x.dtype == y.dtype and x.shape == y.shape
                           and x.tobytes() == y.tobytes()
                           for x, y in ((a.points, b.points), (a.boxes, b.boxes), (a.labels, b.labels)))
                if not same:
                    bad += 1
                    print(f"DIFFERENT: {preset} seed {seed}: points {a.points.shape} / {b.points.shape}, "
                          f"boxes {a.boxes.shape} / {b.boxes.shape}", flush=True)
        print(f"{preset}: {len(picked)} seeds (new made on {threads} thread(s) at once), checked", flush=True)
    print("identical: points, boxes and labels byte-equal for every seed" if not bad else f"{bad} scene(s) differ")
    return 1 if bad else 0


def speed(old, presets: list[str], n: int) -> None:
    from cp_debug.data.scenes import HELDOUT_SEED_BASE, make_scene
    from cp_debug.models.centerpoint.presets import get_preset

    print(f"making a held-out scene, median of {n} seeds (ms of CPU: the process's CPU time, BLAS threads included; "
          "ms wall)")
    for preset in presets:
        cfg = get_preset(preset)
        make_scene(cfg, HELDOUT_SEED_BASE), old.make_scene(cfg, HELDOUT_SEED_BASE)  # warm caches, imports
        times = {"old": ([], []), "new": ([], [])}
        points = 0
        for seed in range(HELDOUT_SEED_BASE + 1, HELDOUT_SEED_BASE + 1 + n):
            for name, make in (("old", old.make_scene), ("new", make_scene)):
                c0, w0 = time.process_time(), time.perf_counter()
                scene = make(cfg, seed)
                times[name][0].append(time.process_time() - c0)
                times[name][1].append(time.perf_counter() - w0)
            points += scene.num_points
        (oc, ow), (nc, nw) = ([1e3 * statistics.median(v) for v in times[k]] for k in ("old", "new"))
        print(f"{preset:>16}: old {oc:7.1f} ms CPU {ow:7.1f} ms wall | new {nc:6.1f} ms CPU {nw:6.1f} ms wall | "
              f"{oc / nc:4.1f}x  ({points // n} points a frame)", flush=True)


def gil_share(make, cfg, seconds: float = 3.0) -> float:
    """The share of `make`'s time holding the GIL: a counter loop's slowdown while another thread runs it."""

    def count(stop: threading.Event) -> int:
        n = 0
        while not stop.is_set():
            n += 1
        return n

    def timed_count(busy: bool) -> float:
        stop, done = threading.Event(), threading.Event()

        def work() -> None:
            seed = 1_000_000
            while not stop.is_set():
                make(cfg, seed)
                seed += 1
            done.set()

        worker = threading.Thread(target=work) if busy else None
        if worker:
            worker.start()
            time.sleep(0.2)
        timer = threading.Timer(seconds, stop.set)
        t0 = time.perf_counter()
        timer.start()
        n = count(stop)
        rate = n / (time.perf_counter() - t0)
        if worker:
            worker.join()
        return rate

    alone = timed_count(False)
    beside = timed_count(True)
    return max(0.0, 1.0 - beside / alone)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=PRESETS)
    ap.add_argument("--frames", type=int, default=20, help="seeds timed per preset")
    ap.add_argument("--check", action="store_true", help="compare old and new scenes byte for byte")
    ap.add_argument("--seeds", type=int, default=50, help="held-out seeds per preset for --check")
    ap.add_argument("--threads", type=int, default=4, help="--check: threads making the new scenes at once")
    ap.add_argument("--gil", action="store_true", help="the share of making a scene that holds the GIL")
    ap.add_argument("--old", help="a folder holding the old cp_debug/data/scenes.py (or the file)")
    ap.add_argument("--old-ref", default="f2ea795", help="the commit whose scenes.py is the old one (git show)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    presets = [p for p in args.presets.split(",") if p]
    old = old_scenes(args.old, args.old_ref)
    if args.check:
        return check(old, presets, args.seeds, args.threads)
    if args.gil:
        from cp_debug.data.scenes import make_scene
        from cp_debug.models.centerpoint.presets import get_preset

        for preset in presets:
            cfg = get_preset(preset)
            print(f"{preset:>16}: GIL held while making a scene: old {gil_share(old.make_scene, cfg):.0%}, "
                  f"new {gil_share(make_scene, cfg):.0%}", flush=True)
        return 0
    speed(old, presets, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())

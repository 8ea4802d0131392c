"""`cpdebug sweep` throughput and memory (issue 22's targets). Run it alone on a quiet machine:

    python benchmarks/sweep_throughput.py [--preset demo] [--frames 50] [--memory-frames 20,200]

1. Throughput: a sweep over N held-out frames (`torch,ort-cpu-fp16`, `--level block`, no bisect, in process)
   against the plain pipelines run back to back (reference then candidate, outputs only, sessions reused: eval's
   `BackendPipeline`). Target: ratio >= 0.5.
2. Memory: peak RSS of the sweep's frame loop after 20 and after 200 frames (one worker, results to shards).
   Target: after-200 <= 1.2x after-20.
Prints one line per figure.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def _plain(preset: str, n: int) -> float:
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.eval.backend_pipeline import BackendPipeline  # the lead may rename eval/backend_pipeline.py at merge
    from cp_debug.eval.session import load_weights
    from cp_debug.models.centerpoint.config import get_preset
    from cp_debug.recipes.centerpoint.export import export_onnx
    from cp_debug.sweep.frames import heldout_frames

    cfg = get_preset(preset)
    frames = heldout_frames(n)
    points = [f.load(cfg)[0] for f in frames]
    model = load_weights(preset, None, False, 0).model
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, cfg, Path(tmp), sample_points=points[0])
        pipes = [BackendPipeline(lbl, BackendSpec.parse(lbl), cfg, model, onnx_dir=Path(tmp)) for lbl in
                 ("torch", "ort-cpu-fp16")]
        for p in pipes:
            p.__enter__()
        try:
            for p in pipes:
                p.run(points[0])  # warm-up
            t0 = time.perf_counter()
            for pts in points:
                for p in pipes:
                    p.run(pts)
            return time.perf_counter() - t0
        finally:
            for p in pipes:
                p.__exit__(None, None, None)


def _sweep(preset: str, n: int, out: Path) -> tuple[float, list[int]]:
    """Seconds of the frame loop, and peak RSS (KiB) after each frame."""
    from cp_debug.sweep.executor import InProcessExecutor
    from cp_debug.sweep.frames import heldout_frames
    from cp_debug.sweep.shards import ShardStore, plan_shards
    from cp_debug.sweep.worker import SweepSettings, SweepWorker

    settings = SweepSettings(("torch", "ort-cpu-fp16"), preset=preset, level="block")
    frames = heldout_frames(n)
    store = ShardStore(out)
    store.start(settings.to_dict(), [f.token for f in frames], 8, resume=False)
    peaks: list[int] = []
    with SweepWorker(settings) as worker:
        worker.run_frame(0, frames[0])  # warm-up
        t0 = time.perf_counter()
        InProcessExecutor(worker).run(plan_shards(frames, 8), store,
                                      lambda r: peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
        return time.perf_counter() - t0, peaks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--memory-frames", default="20,200")
    args = ap.parse_args()
    plain = _plain(args.preset, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        swept, _ = _sweep(args.preset, args.frames, Path(tmp) / "t")
    print(f"throughput: plain pipelines {args.frames / plain:.2f} frames/s, sweep {args.frames / swept:.2f} frames/s, "
          f"ratio {plain / swept:.2f} (target >= 0.5)")
    lo, hi = (int(x) for x in args.memory_frames.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        _, peaks = _sweep(args.preset, hi, Path(tmp) / "m")
    a, b = peaks[lo - 1], peaks[hi - 1]
    print(f"memory: peak RSS after {lo} frames {a / 1024:.0f} MiB, after {hi} frames {b / 1024:.0f} MiB, "
          f"ratio {b / a:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()

"""`cpdebug sweep` throughput and memory (issue 22's targets). Run it alone on a quiet machine:

    python benchmarks/sweep_throughput.py [--preset demo] [--frames 50] [--memory-frames 20,200]
        [--backends torch,ort-cpu-fp16] [--level block] [--what both|throughput|memory] [--serial]
On the GPU machine (issue 25): --preset awml-base --backends torch-cuda,ort-cuda-fp16 (GPU memory is printed too).

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


def _plain(preset: str, n: int, labels: tuple[str, ...]) -> float:
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline
    from cp_debug.eval.session import load_weights
    from cp_debug.recipes import catalog
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.recipes.centerpoint.export import export_onnx
    from cp_debug.data.frames import held_out

    cfg = get_preset(preset)
    frames = held_out(n)
    points = [f.load(cfg).points for f in frames]
    model = load_weights(preset, None, False, 0, catalog.recipe()).model
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, cfg, Path(tmp), sample_points=points[0])
        # the glue on each backend's own device, as `bench` and the sweep's lanes run it (resident on CUDA)
        specs = {lbl: BackendSpec.parse(lbl) for lbl in labels}
        pipes = [BackendPipeline(lbl, spec, cfg, model, onnx_dir=Path(tmp), glue_device=spec.device)
                 for lbl, spec in specs.items()]
        for p in pipes:
            p.__enter__()
        try:
            for p in pipes:
                p.run(points[0])  # warm-up
            t0 = time.perf_counter()
            for pts in points:
                for p in pipes:
                    p.run(pts, step_times=False)  # as the sweep's lanes: no waiting for each step's kernels
            _sync()
            return time.perf_counter() - t0
        finally:
            for p in pipes:
                p.__exit__(None, None, None)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _gpu_mib() -> float:
    """GPU memory in use on the device (torch's allocator and ONNX Runtime's arena alike), MiB; 0 without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return 0.0
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


def _sweep(preset: str, n: int, out: Path, labels: tuple[str, ...], level: str, overlap: bool = True
           ) -> tuple[float, list[int], list[float]]:
    """Seconds of the frame loop, peak RSS (KiB) and GPU memory in use (MiB) after each frame."""
    from cp_debug.sweep.executor import InProcessExecutor
    from cp_debug.data.frames import held_out
    from cp_debug.recipes import catalog
    from cp_debug.sweep.records import SweepSettings
    from cp_debug.sweep.shards import ShardStore, plan_shards
    from cp_debug.recipes.centerpoint.sweep.worker import SweepWorker

    settings = SweepSettings(labels, preset=preset, level=level, overlap=overlap, recipe=catalog.recipe())
    frames = held_out(n)
    store = ShardStore(out)
    store.start(settings.to_json(), [f.token for f in frames], 8, resume=False)
    peaks: list[int] = []
    gpu: list[float] = []

    def after(_result) -> None:
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        gpu.append(_gpu_mib())

    with SweepWorker(settings) as worker:
        worker.run_frame(0, frames[0])  # warm-up
        t0 = time.perf_counter()
        InProcessExecutor(worker).run(plan_shards(frames, 8), store, after)
        _sync()
        return time.perf_counter() - t0, peaks, gpu


def main() -> None:
    import subprocess
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--memory-frames", default="20,200")
    ap.add_argument("--backends", default="torch,ort-cpu-fp16")
    ap.add_argument("--level", default="block")
    ap.add_argument("--what", default="both", choices=("both", "throughput", "memory", "memory-child"))
    ap.add_argument("--serial", action="store_true", help="CUDA: ONNX Runtime candidates after the reference, not "
                    "beside it (SweepSettings.overlap=False): the before of the overlap's A/B")
    args = ap.parse_args()
    labels = tuple(args.backends.split(","))
    if args.what in ("both", "throughput"):
        plain = _plain(args.preset, args.frames, labels)
        with tempfile.TemporaryDirectory() as tmp:
            swept, _, _ = _sweep(args.preset, args.frames, Path(tmp) / "t", labels, args.level, not args.serial)
        print(f"throughput ({args.preset}, {args.backends}, --level {args.level}, {args.frames} frames"
              f"{', lanes serial' if args.serial else ''}): plain "
              f"pipelines {args.frames / plain:.2f} frames/s, sweep {args.frames / swept:.2f} frames/s, ratio "
              f"{plain / swept:.2f} (target >= 0.5)", flush=True)
    if args.what == "both" or args.what == "memory":
        # a fresh process: the throughput part's own peak must not hide the frame loop's growth
        cmd = [sys.executable, __file__, "--what", "memory-child", "--preset", args.preset, "--backends", args.backends,
               "--level", args.level, "--memory-frames", args.memory_frames]
        subprocess.run(cmd, check=True)
    if args.what == "memory-child":
        lo, hi = (int(x) for x in args.memory_frames.split(","))
        with tempfile.TemporaryDirectory() as tmp:
            _, peaks, gpu = _sweep(args.preset, hi, Path(tmp) / "m", labels, args.level)
        a, b = peaks[lo - 1], peaks[hi - 1]
        print(f"memory: peak RSS after {lo} frames {a / 1024:.0f} MiB, after {hi} frames {b / 1024:.0f} MiB, "
              f"ratio {b / a:.3f} (target <= 1.2)", flush=True)
        if gpu[-1] > 0:
            print(f"GPU memory in use after {lo} frames {gpu[lo - 1]:.0f} MiB, after {hi} frames "
                  f"{gpu[hi - 1]:.0f} MiB, max {max(gpu):.0f} MiB", flush=True)


if __name__ == "__main__":
    main()

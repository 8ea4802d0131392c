"""The device-resident pipeline against the host-round-trip one, in one process on one GPU (issue 32):

    python benchmarks/device_resident.py [--preset awml-base] [--backends torch-cuda,ort-cuda,ort-cuda-fp16]
        [--repeat 10] [--sweep torch-cuda,ort-cuda-fp16] [--frames 40] [--level block]

1. Per frame, per backend: `run_pipeline` with the glue on the GPU and numpy between the stages (resident=False:
   what `cpdebug bench` ran before) and resident (torch tensors throughout, ONNX Runtime through IO binding);
   median ms per step, and whether both give the same boxes (decode on the device against the CPU).
2. The sweep's frame loop (`SweepWorker.run_frame`, --level): frames/s with the CUDA lanes' glue on the CPU and
   numpy probes compared on the host (as before) and resident (compared on the device), the plain resident
   pipelines' frames/s in the same run, host RSS and GPU memory at frame 10 and at the end.
Prints one line per figure.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

from sweep_throughput import _gpu_mib, _sync  # this folder's: the script runs as benchmarks/device_resident.py


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"  # the CPU: a dry run of the script


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def per_frame(preset: str, labels: list[str], repeat: int) -> None:
    import numpy as np

    from cp_debug.backends.spec import BackendSpec
    from cp_debug.data.frames import held_out
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline
    from cp_debug.eval.session import load_weights
    from cp_debug.recipes import catalog
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.recipes.centerpoint.export import export_onnx
    from cp_debug.lidar.compare_detections import compare_detections
    from cp_debug.recipes.centerpoint.pipeline import run_pipeline

    cfg = get_preset(preset)
    points = held_out(1)[0].load(cfg).points
    model = load_weights(preset, None, False, 0, catalog.recipe()).model
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, cfg, Path(tmp), sample_points=points)
        for label in labels:
            with BackendPipeline(label, BackendSpec.parse(label), cfg, model, onnx_dir=Path(tmp),
                                 glue_device=_device()) as pipe:
                res = {}
                for resident in (False, True):
                    runs = []
                    for i in range(repeat + 3):
                        _sync()
                        t0 = time.perf_counter()
                        r = run_pipeline(cfg, points, pipe.encoder, pipe.backbone, capture=False, device=_device(),
                                         resident=resident)
                        _sync()
                        if i >= 3:
                            runs.append((time.perf_counter() - t0, r.timings))
                    res[resident] = r
                    steps = {k: statistics.median(t[k] for _, t in runs) * 1e3 for k in runs[0][1]}
                    total = statistics.median(w for w, _ in runs) * 1e3
                    print(f"{preset} {label} {'resident' if resident else 'host-copies'}: total {total:.1f} ms; "
                          + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()), flush=True)
                a, b = res[False].detections, res[True].detections
                d = compare_detections(a, b, max_dist=0.5)
                ties = int(len(a.scores) - len(np.unique(a.scores)))
                print(f"{preset} {label} boxes, host decode vs device decode: {len(a)} vs {len(b)}, matched "
                      f"{d.num_matched}, max centre shift {d.max_centre_dist:.3g}, max score diff "
                      f"{d.max_score_diff:.3g}, same order {np.array_equal(a.boxes, b.boxes)}, tied scores {ties}, "
                      f"score range {a.scores.min(initial=0):.4f}..{a.scores.max(initial=0):.4f}", flush=True)


def sweep(preset: str, labels: tuple[str, ...], level: str, n: int, profile: bool = False) -> None:
    import numpy as np

    from cp_debug.data.frames import held_out
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline
    from cp_debug.recipes import catalog
    from cp_debug.sweep.records import SweepSettings
    from cp_debug.recipes.centerpoint.sweep.worker import SweepWorker

    frames = held_out(n + 1)
    with SweepWorker(SweepSettings(labels, preset=preset, level=level, recipe=catalog.recipe())) as worker:
        for resident in (False, True):
            for lane in worker._lanes:
                lane.resident = resident
            worker.run_frame(0, frames[0])  # warm-up
            rss, gpu = [], []
            t0 = time.perf_counter()
            results = []
            for r in worker.run_frames(enumerate(frames[1:], 1)):  # the next frame read while one runs
                results.append(r)
                rss.append(_rss_mib())
                gpu.append(_gpu_mib())
            _sync()
            dt = time.perf_counter() - t0
            failed = [r.reason for r in results if r.status == "failed"]
            k = min(10, n) - 1
            print(f"sweep {preset} {','.join(labels)} --level {level} {'resident' if resident else 'host'}: "
                  f"{n / dt:.2f} frames/s over {n} frames; RSS {rss[k]:.0f} MiB at frame {k + 1}, {rss[-1]:.0f} at "
                  f"{n}; GPU {gpu[k]:.0f} MiB at frame {k + 1}, {gpu[-1]:.0f} at {n}; failed {len(failed)} "
                  f"{failed[:1]}", flush=True)
            if resident:
                last = results
            else:
                first = results
        same, worst = 0, 0.0
        for a, b in zip(first, last):
            for lane in a.boxes:
                x, y = np.asarray(a.boxes[lane]["boxes"]), np.asarray(b.boxes[lane]["boxes"])
                same += x.shape == y.shape
                worst = max(worst, float(np.abs(x - y).max(initial=0.0))) if x.shape == y.shape else worst
        print(f"sweep host vs resident: same box count on {same}/{n * len(labels)} lane-frames, max box difference "
              f"{worst:.3g}; statuses {[r.status for r in first]} vs {[r.status for r in last]}", flush=True)
        if profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            for _ in worker.run_frames(enumerate(frames[1:11], 1)):
                pass
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(22)
        cfg = worker.cfg
    # the plain resident pipelines, back to back, in the same process
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.eval.session import load_weights
    from cp_debug.recipes import catalog
    from cp_debug.recipes.centerpoint.export import export_onnx
    from cp_debug.recipes.centerpoint.pipeline import run_pipeline

    pts = [f.load(cfg).points for f in frames]
    model = load_weights(preset, None, False, 0, catalog.recipe()).model
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = Path(tmp)
        export_onnx(model, cfg, onnx_dir, sample_points=pts[0])
        pipes = [BackendPipeline(lbl, BackendSpec.parse(lbl), cfg, model, onnx_dir=onnx_dir, glue_device=_device())
                 for lbl in labels]
        for p in pipes:
            p.__enter__()
        for p in pipes:
            run_pipeline(cfg, pts[0], p.encoder, p.backbone, capture=False, device=_device())
        t0 = time.perf_counter()
        for x in pts[1:]:
            for p in pipes:
                run_pipeline(cfg, x, p.encoder, p.backbone, capture=False, device=_device())
        _sync()
        dt = time.perf_counter() - t0
        for p in pipes:
            p.__exit__(None, None, None)
    print(f"plain resident pipelines {','.join(labels)}: {n / dt:.2f} frames/s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--backends", default="torch-cuda,ort-cuda,ort-cuda-fp16")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--sweep", default="torch-cuda,ort-cuda-fp16")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--level", default="block")
    ap.add_argument("--what", default="both", choices=("both", "frame", "sweep"))
    ap.add_argument("--profile", action="store_true", help="cProfile 10 resident sweep frames")
    args = ap.parse_args()
    try:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # errors only: not one warning line per FP16 conv
    except ImportError:
        pass
    if args.what in ("both", "frame"):
        per_frame(args.preset, args.backends.split(","), args.repeat)
    if args.what in ("both", "sweep"):
        sweep(args.preset, tuple(args.sweep.split(",")), args.level, args.frames, args.profile)


if __name__ == "__main__":
    main()

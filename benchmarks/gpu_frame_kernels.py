"""Where a frame's GPU time goes (issue 87, item 1): each backend's plain pipeline, its kernels timed by the card.

    python benchmarks/gpu_frame_kernels.py [--preset awml-base] [--frames 20]
        [--backends torch-cuda,torch-cuda-tf32,ort-cuda,ort-cuda-fp16] [--cudnn-algo heuristic] [--heads FILE]
        [--sweep torch-cuda,ort-cuda-fp16 [--level block]]

For each backend: eval's `BackendPipeline` (the two stages and the glue on the device, sessions made once, three
frames to warm up, as `gpu_card_floor.py` runs them), then `--frames` held-out frames under torch's profiler with
CUDA activity (CUPTI: every kernel and copy of the process, ONNX Runtime's included). Printed per backend: the wall
a frame, the kernels' time a frame and its share of the wall (how busy one process keeps the card), that time by
kind (convolutions, matrix products, copies, the rest) and the kernels that take most of it. The sweep's pair is
`torch-cuda` (the reference: FP32, TF32 off, as the deterministic settings keep it) and `ort-cuda-fp16`;
`torch-cuda-tf32` is what the same reference would cost on the tensor cores, `ort-cuda` the FP32 reference of an
ORT pair. Last, each pair's kernel time a frame and the frames/s it gives where the card runs them one after another
(processes sharing a card under MPS overlap some kernels: a sweep's four actors can run a little beyond it).

`--sweep PAIR`: then the sweep's own frame loop for that pair (`SweepWorker.run_frames` at `--level`, in one
process, as each actor runs it: the probes exposed, the candidate beside the reference, the comparisons queued on
their stream) over the same frames under the profiler: its wall and kernels a frame beside the plain pipelines' sum,
and its kernels by CUDA stream (the reference's, the ORT candidate's, the comparisons', the fronts') — how much GPU
work the sweep adds to the pipelines (the actors' gap to `gpu_card_floor.py`'s floor).

`--cudnn-algo`: how cuDNN picks the conv kernels (`determinism.CONV_ALGOS`, the deterministic settings on otherwise):
`heuristic` is cp_debug's default, `exhaustive` times cuDNN's deterministic algorithms at the first run and keeps the
fastest — what that would buy the FP32 reference (item 1: "where a deterministic cuDNN algorithm is the cost"). One
choice a process: torch keeps a conv's plan by its shape whatever chose it. `--heads FILE` (.npz): each backend's head
maps over the frames are written there when FILE is not there yet, else compared with what it holds (the largest
difference, a digest each): whether another choice (another process) changes the reference's numbers.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

KINDS = (  # the first that matches a kernel's name
    ("normalisation", re.compile(r"bn_fw|batch_?norm|layer_?norm", re.I)),
    ("convolution", re.compile(r"conv|fprop|dgrad|implicit_gemm|winograd", re.I)),  # dgrad: a ConvTranspose
    ("matrix product", re.compile(r"gemm|cutlass|matmul", re.I)),
    ("copy", re.compile(r"memcpy", re.I)),
    ("set", re.compile(r"memset", re.I)),
)


def _kind(name: str) -> str:
    return next((kind for kind, pat in KINDS if pat.search(name)), "other")


def profiled(run, torch):
    """(wall seconds, `run()`'s value, the profiler) of `run()` under torch's profiler with CPU and CUDA activity
    (CUPTI: every kernel and copy of the process), the card waited for before and after."""
    import warnings

    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with warnings.catch_warnings(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        warnings.simplefilter("ignore")  # "Profiler clears events at the end of each cycle": one cycle here
        t0 = time.perf_counter()
        value = run()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    return wall, value, prof


def _profile(pipe, points: list, torch) -> tuple[float, list[tuple[str, float]], list]:
    """The wall seconds of running `points` through `pipe`, each GPU activity (name, microseconds) meanwhile, and
    each frame's head maps (host arrays, read after the timed loop is over)."""
    from torch.autograd import DeviceType

    wall, runs, prof = profiled(lambda: [pipe.run(pts, step_times=False) for pts in points], torch)
    kernels = [(e.name, e.time_range.elapsed_us()) for e in prof.events() if e.device_type == DeviceType.CUDA]
    return wall, kernels, [r.host().head for r in runs]


def _profile_sweep(worker, frames: list, torch) -> tuple[float, list[tuple[str, float]], dict[int, list], dict]:
    """The wall seconds of `frames` through the sweep worker's frame loop, each GPU activity (name, microseconds)
    meanwhile, those activities by CUDA stream (CUPTI's stream id -> [(name, microseconds)]), and for each kernel
    the torch ops that launched it (name -> Counter of op: microseconds; ONNX Runtime's and Triton's kernels have
    none)."""
    wall, results, prof = profiled(lambda: list(worker.run_frames(enumerate(frames))), torch)
    failed = [r.reason for r in results if r.status == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} frames failed in the sweep's loop, the first: {failed[0]}")
    streams: dict[int, list] = collections.defaultdict(list)
    for e in prof.profiler.kineto_results.events():
        if e.device_type() == torch.autograd.DeviceType.CUDA:
            streams[e.device_resource_id()].append((e.name(), e.duration_ns() / 1e3))
    launchers: dict = collections.defaultdict(collections.Counter)
    for e in prof.events():
        for k in getattr(e, "kernels", ()):
            launchers[k.name][e.name] += k.duration
    return wall, [k for ks in streams.values() for k in ks], streams, launchers


def _sweep(args, frames: list, busy: dict, walls: dict, torch) -> None:
    """The sweep's frame loop for `args.sweep` profiled, said beside the plain pipelines' figures."""
    from cp_debug.recipes import catalog
    from cp_debug.recipes.centerpoint.sweep.worker import SweepWorker
    from cp_debug.sweep.records import SweepSettings

    labels = tuple(args.sweep.split(","))
    settings = SweepSettings(labels, preset=args.preset, level=args.level, recipe=catalog.recipe(),
                             cudnn_algo=args.cudnn_algo, threads=1)
    with SweepWorker(settings) as worker:
        for _ in range(3):
            worker.run_frame(0, frames[0])
        wall, kernels, streams, launchers = _profile_sweep(worker, frames, torch)
    n = len(frames)
    ms = _say(f"the sweep's frame loop ({args.sweep}, --level {args.level})", n, wall, kernels, args.top)
    for sid, ks in sorted(streams.items(), key=lambda kv: -sum(us for _, us in kv[1])):
        kinds, names = _tally(ks)
        said = ", ".join(f"{k} {us / 1e3 / n:.2f}" for k, us in kinds.most_common(4))
        print(f"  stream {sid}: {sum(us for _, us in ks) / 1e3 / n:6.2f} ms a frame, {len(ks) / n:.0f} activities "
              f"({said})")
        for name, us in names.most_common(args.top):
            by = launchers.get(name)
            who = f"  < {by.most_common(1)[0][0][:70]}" if by else ""
            print(f"      {us / 1e3 / n:6.2f} ms  {name[:80]}{who}")
    if all(lbl in busy for lbl in labels):
        plain_ms = sum(busy[lbl] for lbl in labels)
        plain_wall = sum(walls[lbl] for lbl in labels) / n * 1e3
        print(f"  against the plain pipelines one after another: kernels {ms:.1f} / {plain_ms:.1f} ms a frame "
              f"({ms / plain_ms:.2f}x), wall {wall / n * 1e3:.1f} / {plain_wall:.1f} ms a frame "
              f"({wall / n * 1e3 / plain_wall:.2f}x)")


def _digest(heads: list) -> str:
    import hashlib

    h = hashlib.sha256()
    for frame in heads:
        for name in sorted(frame):
            h.update(frame[name].tobytes())
    return h.hexdigest()[:12]


def _read_heads(path: Path) -> dict[str, list[dict]]:
    import numpy as np

    kept: dict[str, dict[int, dict]] = collections.defaultdict(dict)
    with np.load(path) as npz:
        for key in npz.files:
            label, i, name = key.split("|")
            kept[label].setdefault(int(i), {})[name] = npz[key]
    return {label: [frames[i] for i in sorted(frames)] for label, frames in kept.items()}


def _largest_difference(heads: list, first: list) -> float:
    import numpy as np

    return max(float(np.max(np.abs(a[n].astype(np.float64) - b[n].astype(np.float64))))
               for a, b in zip(heads, first) for n in a)


def _tally(kernels: list[tuple[str, float]]) -> tuple[collections.Counter, collections.Counter]:
    """The kernels' microseconds by kind (`KINDS`) and by name."""
    kinds, names = collections.Counter(), collections.Counter()
    for name, us in kernels:
        kinds[_kind(name)] += us
        names[name] += us
    return kinds, names


def _say(label: str, frames: int, wall: float, kernels: list[tuple[str, float]], top: int) -> float:
    busy = sum(us for _, us in kernels) / 1e3 / frames  # ms a frame
    print(f"\n{label}: {wall / frames * 1e3:.1f} ms a frame of wall, kernels {busy:.1f} ms a frame "
          f"({busy / (wall / frames * 1e3):.0%} of it), {len(kernels) / frames:.0f} GPU activities a frame")
    kinds, names = _tally(kernels)
    for kind, us in kinds.most_common():
        print(f"  {kind:15s} {us / 1e3 / frames:7.2f} ms a frame  {us / 1e3 / frames / busy:6.1%}")
    for name, us in names.most_common(top):
        print(f"    {us / 1e3 / frames:7.2f} ms  {name[:110]}")
    return busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--backends", default="torch-cuda,torch-cuda-tf32,ort-cuda,ort-cuda-fp16")
    ap.add_argument("--top", type=int, default=6, help="the kernels named under each backend")
    ap.add_argument("--cudnn-algo", default="heuristic", help="how cuDNN picks conv kernels (one choice a process)")
    ap.add_argument("--heads", type=Path, help="an .npz of each backend's head maps: written, or compared with")
    ap.add_argument("--sweep", help="a pair REF,CAND: the sweep's frame loop for it profiled too")
    ap.add_argument("--level", default="block", help="the sweep's --level")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime
    import torch

    from cp_debug.backends.spec import BackendSpec
    from cp_debug.data.frames import held_out
    from cp_debug.determinism import Determinism
    from cp_debug.eval.session import load_weights
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.recipes import catalog
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline
    from cp_debug.recipes.centerpoint.export import export_onnx

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to profile", file=sys.stderr)
        sys.exit(1)
    onnxruntime.set_default_logger_severity(4)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{args.preset}, {args.frames} held-out frames a backend")
    cfg = get_preset(args.preset)
    frames = held_out(args.frames)
    points = [f.load(cfg).points for f in frames]
    model = load_weights(args.preset, None, False, 0, catalog.recipe()).model
    busy, walls, heads = {}, {}, {}
    kept = _read_heads(args.heads) if args.heads is not None and args.heads.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, cfg, Path(tmp), sample_points=points[0])
        for label in filter(None, args.backends.split(",")):
            spec = BackendSpec.parse(label)
            with BackendPipeline(label, spec, cfg, model, onnx_dir=Path(tmp), glue_device=spec.device,
                                 determinism=Determinism(conv_algo=args.cudnn_algo)) as pipe:
                for _ in range(3):
                    pipe.run(points[0])
                wall, kernels, heads[label] = _profile(pipe, points, torch)
            walls[label] = wall
            busy[label] = _say(f"{label} (cuDNN {args.cudnn_algo})", args.frames, wall, kernels, args.top)
            line = f"  head maps over the frames: digest {_digest(heads[label])}"
            if label in kept:
                line += (f"; against {args.heads.name}'s (digest {_digest(kept[label])}) the largest difference "
                         f"{_largest_difference(heads[label], kept[label]):.3g}")
            print(line)
    if args.heads is not None and not kept:
        np.savez(args.heads, **{f"{label}|{i}|{n}": a for label, frames in heads.items()
                                for i, frame in enumerate(frames) for n, a in frame.items()})
    if args.sweep:
        _sweep(args, frames, busy, walls, torch)
    pairs = [("torch-cuda", "ort-cuda-fp16"), ("torch-cuda-tf32", "ort-cuda-fp16"), ("ort-cuda", "ort-cuda-fp16")]
    print()
    for ref, cand in pairs:
        if ref in busy and cand in busy:
            ms = busy[ref] + busy[cand]
            print(f"{ref},{cand}: kernels {ms:.1f} ms a frame, {1e3 / ms:.1f} frames/s run one after another")


if __name__ == "__main__":
    main()

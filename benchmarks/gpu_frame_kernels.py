"""Where a frame's GPU time goes (issue 87, item 1): each backend's plain pipeline, its kernels timed by the card.

    python benchmarks/gpu_frame_kernels.py [--preset awml-base] [--frames 20]
        [--backends torch-cuda,torch-cuda-tf32,ort-cuda,ort-cuda-fp16] [--cudnn-algo heuristic] [--heads FILE]

For each backend: eval's `BackendPipeline` (the two stages and the glue on the device, sessions made once, three
frames to warm up, as `gpu_card_floor.py` runs them), then `--frames` held-out frames under torch's profiler with
CUDA activity (CUPTI: every kernel and copy of the process, ONNX Runtime's included). Printed per backend: the wall
a frame, the kernels' time a frame and its share of the wall (how busy one process keeps the card), that time by
kind (convolutions, matrix products, copies, the rest) and the kernels that take most of it. The sweep's pair is
`torch-cuda` (the reference: FP32, TF32 off, as the deterministic settings keep it) and `ort-cuda-fp16`;
`torch-cuda-tf32` is what the same reference would cost on the tensor cores, `ort-cuda` the FP32 reference of an
ORT pair. Last, each pair's kernel time a frame and the frames/s it gives where the card runs them one after another
(processes sharing a card under MPS overlap some kernels: a sweep's four actors can run a little beyond it).

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


def _profile(pipe, points: list, torch) -> tuple[float, list[tuple[str, float]], list]:
    """The wall seconds of running `points` through `pipe`, each GPU activity (name, microseconds) meanwhile, and
    each frame's head maps (host arrays, read after the timed loop is over)."""
    import warnings

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with warnings.catch_warnings(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        warnings.simplefilter("ignore")  # "Profiler clears events at the end of each cycle": one cycle here
        t0 = time.perf_counter()
        runs = [pipe.run(pts, step_times=False) for pts in points]
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kernels = [(e.name, e.time_range.elapsed_us()) for e in prof.events() if e.device_type == DeviceType.CUDA]
    return wall, kernels, [r.host().head for r in runs]


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


def _say(label: str, frames: int, wall: float, kernels: list[tuple[str, float]], top: int) -> float:
    busy = sum(us for _, us in kernels) / 1e3 / frames  # ms a frame
    print(f"\n{label}: {wall / frames * 1e3:.1f} ms a frame of wall, kernels {busy:.1f} ms a frame "
          f"({busy / (wall / frames * 1e3):.0%} of it), {len(kernels) / frames:.0f} GPU activities a frame")
    kinds = collections.Counter()
    names = collections.Counter()
    for name, us in kernels:
        kinds[_kind(name)] += us
        names[name] += us
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
    points = [f.load(cfg).points for f in held_out(args.frames)]
    model = load_weights(args.preset, None, False, 0, catalog.recipe()).model
    busy, heads = {}, {}
    kept = _read_heads(args.heads) if args.heads is not None and args.heads.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, cfg, Path(tmp), sample_points=points[0])
        for label in args.backends.split(","):
            spec = BackendSpec.parse(label)
            with BackendPipeline(label, spec, cfg, model, onnx_dir=Path(tmp), glue_device=spec.device,
                                 determinism=Determinism(conv_algo=args.cudnn_algo)) as pipe:
                for _ in range(3):
                    pipe.run(points[0])
                wall, kernels, heads[label] = _profile(pipe, points, torch)
            busy[label] = _say(f"{label} (cuDNN {args.cudnn_algo})", args.frames, wall, kernels, args.top)
            line = f"  head maps over the frames: digest {_digest(heads[label])}"
            if label in kept:
                line += (f"; against {args.heads.name}'s (digest {_digest(kept[label])}) the largest difference "
                         f"{_largest_difference(heads[label], kept[label]):.3g}")
            print(line)
    if args.heads is not None and not kept:
        np.savez(args.heads, **{f"{label}|{i}|{n}": a for label, frames in heads.items()
                                for i, frame in enumerate(frames) for n, a in frame.items()})
    pairs = [("torch-cuda", "ort-cuda-fp16"), ("torch-cuda-tf32", "ort-cuda-fp16"), ("ort-cuda", "ort-cuda-fp16")]
    print()
    for ref, cand in pairs:
        if ref in busy and cand in busy:
            ms = busy[ref] + busy[cand]
            print(f"{ref},{cand}: kernels {ms:.1f} ms a frame, {1e3 / ms:.1f} frames/s run one after another")


if __name__ == "__main__":
    main()

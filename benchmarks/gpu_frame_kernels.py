"""Where a frame's GPU time goes (issue 87, item 1): each backend's plain pipeline, its kernels timed by the card.

    python benchmarks/gpu_frame_kernels.py [--preset awml-base] [--frames 20]
        [--backends torch-cuda,torch-cuda-tf32,ort-cuda,ort-cuda-fp16]

For each backend: eval's `BackendPipeline` (the two stages and the glue on the device, sessions made once, three
frames to warm up, as `gpu_card_floor.py` runs them), then `--frames` held-out frames under torch's profiler with
CUDA activity (CUPTI: every kernel and copy of the process, ONNX Runtime's included). Printed per backend: the wall
a frame, the kernels' time a frame and its share of the wall (how busy one process keeps the card), that time by
kind (convolutions, matrix products, copies, the rest) and the kernels that take most of it. The sweep's pair is
`torch-cuda` (the reference: FP32, TF32 off, as the deterministic settings keep it) and `ort-cuda-fp16`;
`torch-cuda-tf32` is what the same reference would cost on the tensor cores, `ort-cuda` the FP32 reference of an
ORT pair. Last, each pair's kernel time a frame and the frames/s it gives where the card runs them one after another
(processes sharing a card under MPS overlap some kernels: a sweep's four actors can run a little beyond it).
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


def _profile(pipe, points: list, torch) -> tuple[float, list[tuple[str, float]]]:
    """The wall seconds of running `points` through `pipe` and each GPU activity (name, microseconds) meanwhile."""
    import warnings

    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with warnings.catch_warnings(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        warnings.simplefilter("ignore")  # "Profiler clears events at the end of each cycle": one cycle here
        t0 = time.perf_counter()
        for pts in points:
            pipe.run(pts, step_times=False)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    kernels = [(e.name, e.time_range.elapsed_us()) for e in prof.events() if e.device_type == DeviceType.CUDA]
    return wall, kernels


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
    args = ap.parse_args()

    import onnxruntime
    import torch

    from cp_debug.backends.spec import BackendSpec
    from cp_debug.data.frames import held_out
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
    busy = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, cfg, Path(tmp), sample_points=points[0])
        for label in args.backends.split(","):
            spec = BackendSpec.parse(label)
            with BackendPipeline(label, spec, cfg, model, onnx_dir=Path(tmp), glue_device=spec.device) as pipe:
                for _ in range(3):
                    pipe.run(points[0])
                wall, kernels = _profile(pipe, points, torch)
            busy[label] = _say(label, args.frames, wall, kernels, args.top)
    pairs = [("torch-cuda", "ort-cuda-fp16"), ("torch-cuda-tf32", "ort-cuda-fp16"), ("ort-cuda", "ort-cuda-fp16")]
    print()
    for ref, cand in pairs:
        if ref in busy and cand in busy:
            ms = busy[ref] + busy[cand]
            print(f"{ref},{cand}: kernels {ms:.1f} ms a frame, {1e3 / ms:.1f} frames/s run one after another")


if __name__ == "__main__":
    main()

"""The plain pipelines' pace on one card (issue 87, item 1): what one card can give a sweep at all.

    python benchmarks/gpu_card_floor.py [--preset awml-base] [--backends torch-cuda,ort-cuda-fp16] [--frames 150]
        [--procs 1,2,4] [--cards 1]

For each count N: N processes on the one card (run it under an NVIDIA MPS daemon to have their kernels side by side,
as the sweep's four actors a card are: benchmarks/gpu_ray_mps.sh), each running the two backends' plain pipelines
back to back on the same held-out frames (eval's `BackendPipeline`: reference then candidate, outputs only, sessions
made once and warmed up, the glue on the device) — no probes, no comparisons, no tables. All start together once
every one is warm; the figure is N × frames over the wall until the last ends, and the card's utilisation meanwhile
(`ray_scaling.GpuSampler`: NVML, else nvidia-smi, each second). A sweep of the same two backends at `--level block`
cannot go faster than this on the card;
`ray_scaling.py` gives its own frames/s once the actors' sessions are open, to set beside it.

`--cards 1,2`: each count N on C cards at once as well, N processes on each (CUDA_VISIBLE_DEVICES one card each), the
figure per card beside the one card's — whether a host's second card runs at the first's pace with no Ray, no driver
and no sweep around the pipelines (issue 87, item 3: a 2-card sweep ran each card ~16 % below one card alone).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from ray_scaling import GpuSampler  # this folder's: the sampler of the scaling runs


def _child(preset: str, labels: list[str], frames: int) -> None:
    """One process: the pipelines made and warmed up, "ready" said; on "go" every frame through both, then its
    seconds said."""
    import tempfile
    from pathlib import Path

    import onnxruntime
    import torch

    from cp_debug.backends.spec import BackendSpec
    from cp_debug.data.frames import held_out
    from cp_debug.eval.session import load_weights
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.recipes import catalog
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline
    from cp_debug.recipes.centerpoint.export import export_onnx

    onnxruntime.set_default_logger_severity(4)  # its cuDNN-frontend fallbacks (logged as errors) buried the figures
    cfg = get_preset(preset)
    points = [f.load(cfg).points for f in held_out(frames)]
    model = load_weights(preset, None, False, 0, catalog.recipe()).model
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, cfg, Path(tmp), sample_points=points[0])
        pipes = [BackendPipeline(lbl, BackendSpec.parse(lbl), cfg, model, onnx_dir=Path(tmp),
                                 glue_device=BackendSpec.parse(lbl).device) for lbl in labels]
        for p in pipes:
            p.__enter__()
        for _ in range(3):
            for p in pipes:
                p.run(points[0])
        _sync(torch)
        print("ready", flush=True)
        sys.stdin.readline()
        t0 = time.perf_counter()
        for pts in points:
            for p in pipes:
                p.run(pts, step_times=False)
        _sync(torch)
        print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
        for p in pipes:
            p.__exit__(None, None, None)


def _sync(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _smi(*query: str) -> str:
    """nvidia-smi's answer for card 0 ("" without one)."""
    try:
        return subprocess.run(["nvidia-smi", "-i", "0", *query, "--format=csv,noheader,nounits"],
                              capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        return ""


def _round(cmd: list[str], n: int, cards: int, frames: int) -> None:
    """`n` processes on each of the first `cards` cards, started together once warm; the line of figures."""
    procs = []
    for card in range(cards):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(card), "CPDEBUG_SERVER": "off"}
        procs += [(card, subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env))
                  for _ in range(n)]
    for _, p in procs:
        assert p.stdout.readline().strip() == "ready", "a child failed before it was warm"
    with GpuSampler() as gpu:  # each card's utilisation, each second, while the frames run
        t0 = time.perf_counter()
        for _, p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        own = [(card, json.loads(p.stdout.readline())["seconds"]) for card, p in procs]
        wall = time.perf_counter() - t0
    for _, p in procs:
        p.wait()
    util = gpu.figures()["util"]
    if cards == 1:
        print(f"{n} process(es) on one card: {n * frames / wall:.2f} frames/s in all "
              f"({n * frames} frames in {wall:.1f} s; each {min(s for _, s in own):.1f}-"
              f"{max(s for _, s in own):.1f} s), GPU utilisation {util.get(0, float('nan')):.0f} %", flush=True)
        return
    per = [n * frames / max(s for c, s in own if c == card) for card in range(cards)]  # each card's own wall
    print(f"{n} process(es) on each of {cards} cards: {cards * n * frames / wall:.2f} frames/s in all "
          f"({cards * n * frames} frames in {wall:.1f} s), a card " + " / ".join(f"{r:.2f}" for r in per)
          + " frames/s, GPU utilisation " + " / ".join(f"{util.get(c, float('nan')):.0f}" for c in range(cards))
          + " %", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--backends", default="torch-cuda,ort-cuda-fp16")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--procs", default="1,2,4")
    ap.add_argument("--cards", default="1", help="card counts, each with --procs processes a card (1,2: one, then two)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    labels = args.backends.split(",")
    if args.child:
        _child(args.preset, labels, args.frames)
        return
    print(_smi("--query-gpu=name,driver_version") or "no GPU")
    cmd = [sys.executable, __file__, "--child", "--preset", args.preset, "--backends", args.backends,
           "--frames", str(args.frames)]
    for cards in (int(x) for x in args.cards.split(",")):
        for n in (int(x) for x in args.procs.split(",")):
            _round(cmd, n, cards, args.frames)


if __name__ == "__main__":
    main()

"""What an ONNX Runtime CUDA session costs the first time in a process, and what `backends/ort_warm.py` saves of it.

    python benchmarks/ort_first_run.py [--preset awml-base]

The preset's backbone/neck/head is exported once (FP32, and FP16 as cp_debug converts it); then each row is a fresh
process that imports ONNX Runtime, makes the session and runs it twice on the device's providers, and prints the
seconds of each step: the session's creation, its first run and its second. Rows: FP16 with the heuristic conv
choice and NHWC (cp_debug's default for an FP16 backbone), the same NCHW, cuDNN's DEFAULT algorithm, FP32; FP16 after
`import torch`; FP16 after `ort_warm.warm_up` (a two-node session made and run first, timed apart). On a machine
without ONNX Runtime's CUDA provider the rows run on the CPU (a check of the script, not a figure of the issue).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = (  # name, file, cuDNN's conv algorithm, prefer_nhwc, before the session: "" | "torch" | "warm-up"
    ("fp16, HEURISTIC + NHWC", "fp16", "HEURISTIC", True, ""),
    ("fp16, HEURISTIC NCHW", "fp16", "HEURISTIC", False, ""),
    ("fp16, DEFAULT", "fp16", "DEFAULT", False, ""),
    ("fp32, HEURISTIC", "fp32", "HEURISTIC", False, ""),
    ("fp16, HEURISTIC + NHWC, after import torch", "fp16", "HEURISTIC", True, "torch"),
    ("fp16, HEURISTIC + NHWC, after ort_warm.warm_up", "fp16", "HEURISTIC", True, "warm-up"),
)


def child(path: str, algo: str, nhwc: bool, before: str, shape: list[int]) -> None:
    """One row, in its own process: the seconds as JSON."""
    import numpy as np
    import onnxruntime as ort

    out = {}
    options = {"device_id": "0", "use_tf32": "0", "cudnn_conv_algo_search": algo}
    if nhwc:
        options["prefer_nhwc"] = "1"
    t0 = time.perf_counter()
    if before == "torch":
        import torch  # noqa: F401 - what a bisect has loaded before its sessions

        out["import torch"] = time.perf_counter() - t0
    elif before == "warm-up":
        from cp_debug.backends.ort_warm import warm_up

        warm_up(options, half=True)
        out["warm-up"] = time.perf_counter() - t0
    so = ort.SessionOptions()
    so.log_severity_level = 3
    t0 = time.perf_counter()
    sess = ort.InferenceSession(path, so, providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"])
    out["session"] = time.perf_counter() - t0
    inp = sess.get_inputs()[0]
    x = np.maximum(np.random.RandomState(0).randn(*shape), 0).astype(np.float16 if "16" in inp.type else np.float32)
    for step in ("first run", "second run"):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        out[step] = time.perf_counter() - t0
    out["providers"] = sess.get_providers()[0]
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        path, algo, nhwc, before, shape = args.child
        return child(path, algo, nhwc == "1", before, json.loads(shape))
    import onnx

    from cp_debug.eval.session import load_weights

    from cp_debug.recipes import catalog
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.precision.fp16 import convert_to_fp16
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, export_onnx

    cfg = get_preset(args.preset)
    nx, ny = cfg.grid_size
    shape = json.dumps([1, cfg.pillar_channels, ny, nx])
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(load_weights(args.preset, None, False, 0, catalog.recipe()).model, cfg, Path(tmp),
                    sample_points=synthetic_scene(0, cfg).points)
        files = {"fp32": str(Path(tmp) / BACKBONE_FILE), "fp16": str(Path(tmp) / "backbone_fp16.onnx")}
        onnx.save(convert_to_fp16(onnx.load(files["fp32"])), files["fp16"])
        print(f"### the {args.preset} backbone's ONNX Runtime session, each row a fresh process (seconds)")
        print("| row | before | session | first run | second run | provider |\n|---|---|---|---|---|---|")
        for name, kind, algo, nhwc, before in ROWS:
            r = subprocess.run([sys.executable, __file__, "--child", files[kind], algo, "1" if nhwc else "0",
                                before, shape], capture_output=True, text=True, env=dict(os.environ))
            if r.returncode != 0:
                print(f"| {name} | failed: {r.stderr.strip().splitlines()[-1][:160]} | | | | |", flush=True)
                continue
            d = json.loads(r.stdout.strip().splitlines()[-1])
            pre = next((f"{k} {d[k]:.2f}" for k in ("import torch", "warm-up") if k in d), "—")
            print(f"| {name} | {pre} | {d['session']:.2f} | {d['first run']:.2f} | {d['second run']:.3f} | "
                  f"{d['providers']} |", flush=True)


if __name__ == "__main__":
    main()

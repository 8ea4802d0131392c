"""What an ONNX Runtime CUDA session costs the first time in a process, and what `backends/ort/ort_warm.py` saves of it.

    python benchmarks/ort_first_run.py [--preset awml-base]

The preset's backbone/neck/head is exported once (FP32, and FP16 as cp_debug converts it); then each row is a fresh
process that imports ONNX Runtime, makes the session and runs it twice on the device's providers, and prints the
seconds of each step: the session's creation, its first run and its second. Rows: FP16 with the heuristic conv
choice and NHWC (cp_debug's default for an FP16 backbone), the same NCHW, cuDNN's DEFAULT algorithm, FP32; FP16 after
`import torch`; FP16 after `ort_warm.warm_up` (a two-node session made and run first, timed apart). On a machine
without ONNX Runtime's CUDA provider the rows run on the CPU (a check of the script, not a figure of the issue).

The last table is the floor of an own-process bisect of the ORT pair (issue 87, item 4: `ort-cuda,ort-cuda-fp16`
≤ 3 s): fresh processes that do only what such a bisect cannot skip — start the interpreter, import torch (the
comparisons and the subject are torch's) and ONNX Runtime, make the FP32 and FP16 backbone sessions on two threads
side by side as the bisect's reference and candidate do, and run each once — timed around the whole process.
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
        from cp_debug.backends.ort.ort_warm import warm_up

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


def pair_child(fp32: str, fp16: str, shape: list[int]) -> None:
    """The ORT pair's floor in this process: seconds since the interpreter started at each step, as JSON."""
    from concurrent.futures import ThreadPoolExecutor

    t_start = time.perf_counter() - _since_start()
    import torch  # noqa: F401 - a bisect cannot do without it
    import numpy as np
    import onnxruntime as ort

    from cp_debug.determinism import Determinism

    out = {"imports": time.perf_counter() - t_start}
    det = Determinism()  # the bisect's own settings: deterministic compute, HEURISTIC, FP16 convs NHWC

    def one(path: str, half: bool) -> None:
        options = det.ort_cuda_provider_options(tf32=False, half=half)
        sess = ort.InferenceSession(path, det.ort_session_options(),
                                    providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"])
        out["fp16 session" if half else "fp32 session"] = time.perf_counter() - t_start
        inp = sess.get_inputs()[0]
        x = np.zeros(shape, np.float16 if "16" in inp.type else np.float32)
        sess.run(None, {inp.name: x})
        out["fp16 first run" if half else "fp32 first run"] = time.perf_counter() - t_start

    with ThreadPoolExecutor(1) as pool:  # the FP16 session beside the FP32 one; its error raised here
        side = pool.submit(one, fp16, True)
        one(fp32, False)
        side.result()
    out["both"] = time.perf_counter() - t_start
    print(json.dumps(out), flush=True)
    os._exit(0)  # as the CLI ends: without Python's exit hooks (torch's and ONNX Runtime's teardown)


def _since_start() -> float:
    """Seconds since this process started (Linux: /proc/self/stat's start time against the uptime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    return float(Path("/proc/uptime").read_text().split()[0]) - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--pair-child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--floor-runs", type=int, default=3, help="fresh processes for the ORT pair's floor")
    args = ap.parse_args()
    if args.pair_child:
        fp32, fp16, shape = args.pair_child
        return pair_child(fp32, fp16, json.loads(shape))
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
        _pair_floor(files, shape, args.floor_runs)


def _pair_floor(files: dict, shape: str, runs: int) -> None:
    """The ORT pair's own-process floor: `runs` fresh processes, each timed around the whole process."""
    print("\n### the ORT pair's own-process floor (FP32 and FP16 backbone sessions side by side, one run each), "
          "seconds since each process started")
    print("| run | imports (torch, ONNX Runtime) | FP32 session | FP32 first run | FP16 session | FP16 first run | "
          "both | process wall |\n|---|---|---|---|---|---|---|---|")
    for k in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, __file__, "--pair-child", files["fp32"], files["fp16"], shape],
                           capture_output=True, text=True, env=dict(os.environ))
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"| {k + 1} | failed: {r.stderr.strip().splitlines()[-1][:160]} | | | | | | |", flush=True)
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        cells = " | ".join(f"{d[key]:.2f}" for key in ("imports", "fp32 session", "fp32 first run", "fp16 session",
                                                       "fp16 first run", "both"))
        print(f"| {k + 1} | {cells} | {wall:.2f} |", flush=True)


if __name__ == "__main__":
    main()

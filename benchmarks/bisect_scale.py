"""cpdebug bisect --level all against polygraphy on the same CenterPoint backbone/neck/head ONNX.

Prints wall time and peak memory (max RSS of the process) of, in one run:
  1. polygraphy run --onnxrt --onnxrt --onnx-outputs mark all   (every tensor of both runs at once)
  2. polygraphy run --onnxrt --onnxrt                             (the two plain inferences)
  3. cpdebug bisect --onnx … --backends ort,ort --level all
Target (issue 3): 3 within 3x the time and 1.5x the memory of 2.

    python benchmarks/bisect_scale.py --preset demo [--preset awml-base]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS GiB, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        print(f"  ! {' '.join(cmd[:4])}… exited {code}: {err.strip().splitlines()[-1] if err.strip() else ''}")
    return wall, usage.ru_maxrss / (1 << 20), code


def prepare(preset: str, out: str) -> tuple[str, str, str]:
    import numpy as np
    import torch
    from polygraphy.json import save_json

    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    subject = centerpoint_subject(preset=preset)
    enc, bb = subject.stages
    onnx_path = os.path.join(out, "pts_backbone_neck_head.onnx")
    import onnx

    onnx.save(bb.onnx(), onnx_path)
    from cp_debug.backends import make_runner
    from cp_debug.backends.spec import BackendSpec

    with make_runner(BackendSpec.parse("ort"), onnx_model=enc.onnx()) as r:
        pillars = r.infer(subject.inputs)
    feed = subject.feed(1, pillars)
    npz = os.path.join(out, "inputs.npz")
    np.savez(npz, **feed)
    js = os.path.join(out, "inputs.json")
    save_json([feed], js)
    return onnx_path, npz, js


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append", default=None)
    args = ap.parse_args()
    presets = args.preset or ["demo"]
    polygraphy = shutil.which("polygraphy") or "polygraphy"
    cpdebug = shutil.which("cpdebug") or "cpdebug"
    for preset in presets:
        tmp = tempfile.mkdtemp(prefix=f"cpdebug-scale-{preset}-")
        try:
            onnx_path, npz, js = prepare(preset, tmp)
            runs = {
                "polygraphy mark all": [polygraphy, "run", onnx_path, "--onnxrt", "--onnxrt", "--load-inputs", js,
                                        "--onnx-outputs", "mark", "all"],
                "polygraphy outputs only": [polygraphy, "run", onnx_path, "--onnxrt", "--onnxrt", "--load-inputs", js],
                "cpdebug bisect --level all": [cpdebug, "bisect", "--onnx", onnx_path, "--inputs", npz,
                                               "--backends", "ort,ort", "--level", "all", "--quiet",
                                               "--json", os.path.join(tmp, "run.json")],
            }
            print(f"\n{preset}: {onnx_path}")
            res = {}
            for name, cmd in runs.items():
                res[name] = measure(cmd)
                wall, rss, code = res[name]
                print(f"  {name:28s} {wall:8.1f} s {rss:7.2f} GiB peak RSS   exit {code}")
            base = res["polygraphy outputs only"]
            mine = res["cpdebug bisect --level all"]
            print(f"  cpdebug / plain inferences: {mine[0] / base[0]:.2f}x time (target 3x), "
                  f"{mine[1] / base[1]:.2f}x memory (target 1.5x)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

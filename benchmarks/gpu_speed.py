"""Issue #12's H100 measure: whole `cpdebug bisect --preset awml-base --level all` runs, wall time and peak host
RSS of each process (export, sessions, comparisons and report included), with the verdicts they reached.

Run on the GPU machine from the repo root (onnxruntime-gpu and numba installed):
    python benchmarks/gpu_speed.py [--out DIR]
The first run of a fresh machine also compiles the comparison kernels into numba's cache ("cold"); the same
command runs again warm. The first torch-cuda run also reads torch's CUDA libraries from disk ("first").
Targets: ≤ 30 s and ≤ 8 GB for ort-cuda,ort-cuda-fp16 and torch-cuda,ort-cuda-fp16.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PAIRS = [("cold: ort-cuda,ort-cuda-fp16", "ort-cuda,ort-cuda-fp16"),
         ("ort-cuda,ort-cuda-fp16", "ort-cuda,ort-cuda-fp16"),
         ("first: torch-cuda,ort-cuda-fp16", "torch-cuda,ort-cuda-fp16"),
         ("torch-cuda,ort-cuda-fp16", "torch-cuda,ort-cuda-fp16"),
         ("torch-cuda,torch-cuda-fp16", "torch-cuda,torch-cuda-fp16"),
         # the reference store's budget (2 GiB by default) spills the torch pair's whole-stage probes to disk
         ("torch-cuda,ort-cuda-fp16 --memory-budget 12288", "torch-cuda,ort-cuda-fp16")]


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS GB, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_maxrss / 1e6, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="folder for the JSON reports (default: a temporary one)")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="cpdebug-gpu-speed-")
    os.makedirs(out, exist_ok=True)
    print("| backends (`--preset awml-base --level all`) | wall | peak host RSS | execution | first "
          "divergent | root cause |")
    print("|---|---|---|---|---|---|")
    for k, (name, backends) in enumerate(PAIRS):
        js = os.path.join(out, f"run{k}.json")
        extra = name.split(" ")[1:] if "--" in name else []
        wall, rss, code = measure([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--preset", "awml-base",
                                   "--level", "all", "--backends", backends, "--quiet", "--json", js, *extra])
        row = ["?"] * 3
        if os.path.isfile(js):
            d = json.load(open(js))
            cand = backends.split(",")[1]
            ex = d["settings"].get("execution", {})
            row = ["; ".join(sorted(set(ex.values()))), str(d["first_divergent"].get(cand)),
                   str((d["root_cause"].get(cand) or {}).get("probe"))]
        print(f"| {name} | {wall:.1f} s | {rss:.2f} GB | {row[0]} | {row[1]} | {row[2]} |  (exit {code})", flush=True)


if __name__ == "__main__":
    main()

"""Is the CPU's emulated FP16 (`torch-cpu-fp16`) close to what a GPU computes (`torch-cuda-fp16`)?

Runs one bisect per preset with the FP32 CUDA reference and both FP16 candidates, then prints, per probe, the
relative RMSE of each against the reference and their ratio (emulated / CUDA). Run it on the GPU machine:

    python benchmarks/fp16_emulation_check.py [--presets demo,awml-base] [--level all] [--out DIR]

A ratio near 1 means the emulation's error is the GPU's error in size (the values differ: cuDNN picks other
algorithms and summation orders, so element-wise equality is not expected).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _run(preset: str, level: str, out: Path, extra: list[str]) -> dict:
    path = out / f"{preset}{'-random' if '--random-weights' in extra else ''}.json"
    cmd = [sys.executable, "-m", "cp_debug.cli.main", "bisect", "--preset", preset, "--level", level, "--backends",
           "torch-cuda,torch-cuda-fp16,torch-cpu-fp16", "--json", str(path), "--quiet", *extra]
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    print(f"\n### {preset}{' (random weights)' if extra else ''}, --level {level}: {time.time() - t:.0f} s\n")
    return json.loads(path.read_text())


def _table(doc: dict) -> list[float]:
    cuda = {r["probe"]: r for r in doc["results"]["torch-cuda-fp16"]}
    emu = {r["probe"]: r for r in doc["results"]["torch-cpu-fp16"]}
    print("| probe | rel RMSE torch-cuda-fp16 | rel RMSE torch-cpu-fp16 (emulated) | ratio |")
    print("|---|---:|---:|---:|")
    ratios = []
    for name, c in cuda.items():
        e = emu.get(name)
        if e is None or c.get("rel_rmse") is None or e.get("rel_rmse") is None:
            continue
        a, b = c["rel_rmse"], e["rel_rmse"]
        ratio = b / a if a > 0 else math.nan
        if math.isfinite(ratio):
            ratios.append(ratio)
        print(f"| {name} | {a:.3e} | {b:.3e} | {ratio:.2f} |")
    if ratios:
        print(f"\nratio over {len(ratios)} probes: median {statistics.median(ratios):.2f}, "
              f"min {min(ratios):.2f}, max {max(ratios):.2f}")
    for cand in ("torch-cuda-fp16", "torch-cpu-fp16"):
        prec = doc["precision"].get(cand)
        print(f"- {cand}: first divergent {doc['first_divergent'].get(cand)}, ran {prec['effective'] if prec else '?'}")
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="demo,awml-base")
    ap.add_argument("--level", default="all")
    ap.add_argument("--out", type=Path, default=Path("cpdebug-out/fp16-emulation"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for preset in args.presets.split(","):
        _table(_run(preset, args.level, args.out, []))
        if preset == "demo":
            _table(_run(preset, args.level, args.out, ["--random-weights"]))


if __name__ == "__main__":
    main()

"""`cpdebug sweep` in process against `--ray local` with 1, 2, … workers, one machine, one run (issue 71).

    python benchmarks/ray_scaling.py [--frames 120] [--workers 1,2] [--preset tiny] [--backends torch,ort-cpu-fp16]
        [--level block] [--out DIR]
On a GPU host: --preset awml-base --backends torch-cuda,ort-cuda-fp16 --workers 1,2,4 (one actor per GPU each).
Prints per run: wall seconds, frames/s, speed-up over one Ray worker and efficiency (speed-up ÷ workers), the
ratio to the in-process wall, the CPUs each actor got, the mean GPU utilisation sampled every second (nvidia-smi,
where there is one), and whether sweep.json's numbers equal the in-process run's (versions and the executor
aside). Each run is a fresh `cpdebug` process: the figures include starting Ray and its actors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _numbers(out: Path) -> dict:
    doc = json.loads((out / "sweep.json").read_text())
    doc.pop("environment", None)
    doc["settings"] = {k: v for k, v in doc["settings"].items() if k != "executor"}
    doc.pop("seconds", None)
    return doc


class _GpuSampler:
    """Mean utilisation of every GPU, sampled once a second while a run goes (None without nvidia-smi)."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True) if shutil.which("nvidia-smi") else None

    def _loop(self):
        while not self._stop.wait(1.0):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.split()
            if out:
                self.samples.append(sum(float(x) for x in out) / len(out))

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def _sweep(args, out: Path, extra: list[str]) -> tuple[float, float | None]:
    cmd = [sys.executable, "-m", "cp_debug.cli.main", "sweep", "--preset", args.preset, "--backends", args.backends,
           "--level", args.level, "--n", str(args.frames), "--bisect-top", "0", "--no-html", "-q", "--out", str(out),
           *extra]
    with _GpuSampler() as gpu:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1, 4):
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return wall, gpu.mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--backends", default="torch,ort-cpu-fp16")
    ap.add_argument("--level", default="block")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="ray_scaling_"))
    here_wall, here_gpu = _sweep(args, root / "in_process", [])
    base = _numbers(root / "in_process")
    print(f"in process: {here_wall:.1f} s, {args.frames / here_wall:.2f} frames/s"
          + (f", GPU {here_gpu:.0f}%" if here_gpu is not None else ""))
    one = None
    for w in (int(x) for x in args.workers.split(",")):
        out = root / f"ray_{w}"
        wall, gpu = _sweep(args, out, ["--ray", "local", "--ray-workers", str(w)])
        ex = json.loads((out / "sweep.json").read_text())["settings"]["executor"]
        one = one or (wall if w == 1 else None)
        speedup = (one / wall) if one else None
        same = _numbers(out) == base
        print(f"ray {w} worker(s): {wall:.1f} s, {args.frames / wall:.2f} frames/s, "
              f"{wall / here_wall:.2f}x the in-process wall"
              + (f", speed-up {speedup:.2f}x over 1 worker, efficiency {speedup / w:.2f}" if speedup else "")
              + f", {ex.get('cpus_per_worker')} CPU(s) each of {ex.get('cluster_cpus')}"
              + (f", GPU {gpu:.0f}%" if gpu is not None else "")
              + f", report {'identical' if same else 'DIFFERS'}")


if __name__ == "__main__":
    main()

"""Issue 118, item 3: where a bisect in a process of its own spends its seconds, from the interpreter's start to its
end.

    python benchmarks/own_process.py [--preset awml-base] [--pair torch-cuda,ort-cuda-fp16 ...] [--runs 3]
                                     [--importtime] [--profile]

For each pair: one run to fill the export cache, then `--runs` warm runs, each a fresh process (`python -m
cp_debug.cli.main bisect --preset P --level all -b PAIR --quiet --json …`): the wall, and the report's own phases
(`settings.phases`), the median of each; "before check" is the wall less the phases' total (the interpreter, the imports
of the CLI, typer). `--importtime`: one more run under `python -X importtime`, the packages whose import took longest
(cumulative, every thread's) — only those imported before the command takes file descriptor 2 for the report's
third-party lines: `-X importtime` writes there, so torch's import in the run (the report's `libraries` phase) does not
show (on the H200 the list held the CLI's own imports alone). `--profile`: one more run under cProfile (the main
thread), the functions with the most cumulative time. Default pairs: the two GPU pairs on CUDA, the CPU pairs else.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(cache: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
            "CPDEBUG_SERVER": "off", "CPDEBUG_CACHE_DIR": str(cache)}


def _bisect(pre: list[str], preset: str, pair: str, js: Path, env: dict) -> tuple[float, int, str]:
    cmd = [sys.executable, *pre, "-m", "cp_debug.cli.main", "bisect", "--preset", preset, "--level", "all", "-b",
           pair, "--quiet", "--json", str(js)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 1, 4):
        print(f"  ! exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}", flush=True)
    return wall, done.returncode, done.stderr


def _importtime(stderr: str, top: int = 25) -> list[tuple[int, str]]:
    """(cumulative µs, name) of the packages (names without a dot) in `-X importtime`'s lines, longest first: the
    indentation is not read (threads importing side by side share its depth), so a package imported inside another
    counts in both."""
    rows: dict[str, int] = {}
    for line in stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if "." not in name:
            rows[name] = max(rows.get(name, 0), int(parts[1]))
    return sorted(((us, name) for name, us in rows.items()), reverse=True)[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="awml-base")
    ap.add_argument("--pair", action="append", default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--importtime", action="store_true")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    cuda = subprocess.run([sys.executable, "-c", "from cp_debug.cuda_driver import visible_gpus as v; print(v())"],
                          env=_env(ROOT), capture_output=True, text=True).stdout.strip() not in ("None", "0", "")
    pairs = args.pair or (["torch-cuda,ort-cuda-fp16", "ort-cuda,ort-cuda-fp16"] if cuda
                          else ["torch,ort-cpu-fp16", "ort,ort-cpu-fp16"])
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(Path(tmp) / "cache")
        for pair in pairs:
            js = Path(tmp) / "r.json"
            first = _bisect([], args.preset, pair, js, env)[0]
            walls, phases = [], []
            for _ in range(args.runs):
                wall, code, _ = _bisect([], args.preset, pair, js, env)
                walls.append(wall)
                phases.append(json.loads(js.read_text())["settings"]["phases"])
            print(f"\n## `bisect --preset {args.preset} --level all -b {pair}` on {os.uname().nodename} "
                  f"({os.cpu_count()} cores): first {first:.2f} s, warm {' '.join(f'{w:.2f}' for w in walls)} "
                  f"(median **{statistics.median(walls):.2f} s**, exit {code})")
            names = list(dict.fromkeys(k for p in phases for k in p))
            before = [w - p["total"] for w, p in zip(walls, phases)]
            print(f"- before check (interpreter, CLI imports): {statistics.median(before):.3f} s")
            for k in names:
                print(f"- {k}: {statistics.median(p.get(k, 0.0) for p in phases):.3f} s")
            if args.importtime:
                _, _, err = _bisect(["-X", "importtime"], args.preset, pair, js, env)
                print("- top-level imports (cumulative, -X importtime): " + ", ".join(
                    f"{name} {us / 1e6:.3f} s" for us, name in _importtime(err)))
            if args.profile:
                prof = Path(tmp) / "p.prof"
                _bisect(["-m", "cProfile", "-o", str(prof)], args.preset, pair, js, env)
                print("- cProfile (main thread), cumulative:")
                stats = pstats.Stats(str(prof))
                stats.sort_stats("cumulative")
                for func in stats.fcn_list[:45]:  # type: ignore[attr-defined]
                    cc, nc, tt, ct, _ = stats.stats[func]  # type: ignore[attr-defined]
                    print(f"    {ct:7.3f} s  {tt:7.3f} s self  {nc:6d}×  {func[0].split('site-packages/')[-1]}:"
                          f"{func[1]}({func[2]})")


if __name__ == "__main__":
    main()

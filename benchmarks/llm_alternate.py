"""Issue 116 item 5: the 0.5 B pair's bisect by several trees of cp_debug side by side, against one floor a round.

    python benchmarks/llm_alternate.py OUT --rounds 6 --tree source=/tmp/base --tree branch=/work/wt/mine \
        [--tree NAME=ROOT[:SCRIPT] ...] [--generate 8]

OUT holds `llm_size.py make`'s files (fp32/, int4/, prompt.npz; links will do). Each round runs `llm_size.py`'s floor,
then each tree's `cpdebug bisect` (the command `llm_size.py measure` runs, a fresh cache folder each), the trees'
order reversed in odd rounds; every child holds `flock /tmp/cpdebug-bench.lock` while it runs (other helpers share
the cores). A tree is a folder holding `cp_debug`, imported through PYTHONPATH (run this from a folder that holds
no `cp_debug`: the current folder comes first on `sys.path`); `:SCRIPT` runs that Python file with the bisect's
arguments instead of `-m cp_debug.cli.main` (a wrapper that changes something in-process). Prints a line a child
(load, CPU seconds from wait4, wall, peak RSS, exit, ÷ its round's floor) and each tree's medians; each report is kept
as OUT/alternate/TREE_ROUND.json for `json_diff.py`.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from llm_size import FLOOR  # noqa: E402 - the floor's script, one home

LOCK = "/tmp/cpdebug-bench.lock"


def child(cmd: list[str], env: dict, log: Path) -> tuple[float, float, float, int, str]:
    """(CPU s, wall s, peak RSS GB, exit code, load when it began) of `cmd`, run under the benchmarks' lock."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load = Path("/proc/loadavg").read_text().split()[0]
        t0 = time.perf_counter()
        with open(log, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
        return (usage.ru_utime + usage.ru_stime, time.perf_counter() - t0, usage.ru_maxrss / 1e6,
                os.waitstatus_to_exitcode(status), load)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tree", action="append", required=True, help="NAME=ROOT[:SCRIPT]")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--generate", type=int, default=8)
    args = ap.parse_args()
    out, n = args.out.resolve(), args.generate
    trees = {}
    for spec in args.tree:
        name, _, where = spec.partition("=")
        root, _, script = where.partition(":")
        if not name or not (Path(root) / "cp_debug").is_dir():
            ap.error(f"--tree {spec}: NAME=ROOT with ROOT holding cp_debug")
        trees[name] = (root, script)
    work = out / "alternate"
    work.mkdir(exist_ok=True)
    (work / "floor.py").write_text(FLOOR)
    bisect = ["bisect", "--onnx", str(out / "fp32" / "model.onnx"), "-b", f"ort,ort@{out / 'int4'}", "--inputs",
              str(out / "prompt.npz"), "--generate", str(n)]
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    floors = []
    for r in range(args.rounds):
        fcpu, fwall, _, code, load = child(["nice", sys.executable, str(work / "floor.py"), str(out), str(n)],
                                           dict(os.environ), work / "floor.log")
        floors.append(fcpu)
        print(f"round {r}  load {load}  floor  cpu {fcpu:.2f} s  wall {fwall:.1f} s  exit {code}", flush=True)
        for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            root, script = trees[name]
            cache = work / f"cache_{name}"
            shutil.rmtree(cache, ignore_errors=True)
            env = {**os.environ, "PYTHONPATH": root, "CPDEBUG_CACHE_DIR": str(cache)}
            run = [script] if script else ["-m", "cp_debug.cli.main"]
            cmd = ["nice", sys.executable, *run, *bisect, "--json", str(work / f"{name}_{r}.json")]
            cpu, wall, rss, code, load = child(cmd, env, work / f"{name}_{r}.log")
            got[name].append((cpu, cpu / fcpu))
            print(f"round {r}  load {load}  {name}  cpu {cpu:.2f} s  wall {wall:.1f} s  rss {rss:.2f} GB  exit {code}"
                  f"  ÷ floor {cpu / fcpu:.3f}", flush=True)
    mid = statistics.median(floors)
    print(f"floors: median {mid:.2f} CPU s ({min(floors):.2f}-{max(floors):.2f})")
    for name, rows in got.items():
        cpu = statistics.median(c for c, _ in rows)
        ratio = statistics.median(x for _, x in rows)
        print(f"{name}: median {cpu:.2f} CPU s; ÷ its floor {ratio:.3f} (median); ÷ the floors' median "
              f"{cpu / mid:.3f} (target ≤ 1.5x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

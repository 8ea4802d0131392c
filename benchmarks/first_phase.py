"""Issue 118, item 3: how long `cpdebug bisect` takes from the interpreter's start to the end of its first phase
(`check`: options, backends found, outputs writable), where the model's load begins.

    python benchmarks/first_phase.py [--runs 5] [--backends torch,ort-cpu-fp16]

Each run is a fresh `python` process running `cpdebug bisect --preset tiny …` whose `run_bisect` is replaced by a
stop that prints the time since the process started (`time.time()` against the process's own start time from
/proc/self/stat) and the heavy libraries imported by then; the table gives each run and the median, beside a bare
`python -c pass` (the interpreter's own start) measured the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the process's start from /proc/self/stat (field 22, clock ticks after boot) against the boot time: wall seconds
_SINCE_START = """
import os, time
def since_start():
    ticks = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])
    boot = next(float(l.split()[1]) for l in open('/proc/stat') if l.startswith('btime'))
    return time.time() - (boot + ticks / os.sysconf('SC_CLK_TCK'))
"""

_UNTIL_THE_RUN = _SINCE_START + """
import json, sys
from cp_debug.cli import bisect_cmd
HEAVY = ("torch", "onnxruntime", "pandas", "polygraphy", "matplotlib", "numba", "onnx_graphsurgeon", "transformers")

def stop(request, outputs, third_party, budget=None, phases=None):
    print("RESULT " + json.dumps({"seconds": since_start(), "heavy": [m for m in HEAVY if m in sys.modules]}),
          file=sys.__stdout__, flush=True)
    return 0

bisect_cmd.run_bisect = stop
sys.argv = ["cpdebug", "bisect", *sys.argv[1:]]
from cp_debug.cli.main import main
main()
"""

_BARE = _SINCE_START + """
import json
print("RESULT " + json.dumps({"seconds": since_start(), "heavy": []}), flush=True)
"""


def _once(script: str, args: list[str], cwd: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    r = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    if "RESULT " not in r.stdout:
        raise SystemExit(f"no result (exit {r.returncode}): {r.stderr[-1500:]}")
    return json.loads(r.stdout.split("RESULT ", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--backends", default="torch,ort-cpu-fp16")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = [_once(_BARE, [], tmp)["seconds"] for _ in range(args.runs)]
        runs = [_once(_UNTIL_THE_RUN, ["--preset", "tiny", "-b", args.backends, "--json", f"{tmp}/r.json", "-q"],
                      tmp) for _ in range(args.runs)]
    check = [r["seconds"] for r in runs]
    print(f"## first phase of `cpdebug bisect --preset tiny -b {args.backends}` on {os.uname().nodename} "
          f"({os.cpu_count()} cores), {args.runs} runs")
    print(f"python -c pass          {' '.join(f'{s:.3f}' for s in bare)}   median {statistics.median(bare):.3f} s")
    print(f"bisect to end of check  {' '.join(f'{s:.3f}' for s in check)}   median {statistics.median(check):.3f} s")
    print(f"heavy libraries imported by then: {sorted(set(m for r in runs for m in r['heavy'])) or 'none'}")


if __name__ == "__main__":
    main()

"""Issue 118, item 2: can `import torch` overlap ONNX Runtime's session build (or the reverse) on two threads of one
process? Measured, each case in a fresh interpreter:

    python benchmarks/gil_overlap.py ONNX_FILE [--runs 3] [--provider CPUExecutionProvider]

- `torch`: `import torch` alone; `session`: `onnxruntime.InferenceSession(ONNX_FILE)` alone (onnxruntime imported
  before the clock starts, as in a bisect, where it is imported by then);
- `one after the other`: both on the main thread; `side by side`: torch's import on a second thread while the main
  thread builds the session (the wall until both are done);
- `GIL`: while each runs, a second thread counts in a pure-Python loop: its rate against the loop alone (1.0: the
  operation held no GIL; 0.5: it held it all its time, the two threads taking turns).

The medians of `--runs` are printed with the load average. Overlap pays where `side by side` is shorter than `one after
the other` by more than the noise: the session build must release the GIL while it works (ONNX Runtime's C++ graph
optimisation), `import torch` runs Python bytecode holding it, so the two overlap only as far as the session's part
without the GIL goes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CASE = r"""
import json, sys, threading, time
case, path, provider = sys.argv[1:4]
import onnxruntime as ort

def session():
    ort.InferenceSession(path, providers=[provider])

def torch():
    import torch  # noqa: F401

def loop(stop, out):
    n, t0 = 0, time.perf_counter()
    while not stop.is_set():
        n += 1
    out.append(n / (time.perf_counter() - t0))

def with_loop(fn):
    stop, out = threading.Event(), []
    th = threading.Thread(target=loop, args=(stop, out))
    th.start()
    fn()
    stop.set()
    th.join()
    return out[0]

t0 = time.perf_counter()
if case == "torch":
    torch()
elif case == "session":
    session()
elif case == "one after the other":
    torch(); session()
elif case == "side by side":
    th = threading.Thread(target=torch)
    th.start(); session(); th.join()
elif case.startswith("GIL "):
    alone = with_loop(lambda: time.sleep(0.5))
    rate = with_loop(torch if case == "GIL torch" else session)
    print(json.dumps({"ratio": rate / alone}))
    sys.exit(0)
print(json.dumps({"wall": time.perf_counter() - t0}))
"""

CASES = ("torch", "session", "one after the other", "side by side", "GIL torch", "GIL session")


def _one(case: str, path: str, provider: str) -> float:
    done = subprocess.run([sys.executable, "-c", _CASE, case, path, provider], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{case}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return got.get("wall", got.get("ratio"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--provider", default="CPUExecutionProvider")
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}; {args.onnx} ({os.path.getsize(args.onnx) / 1e6:.1f} MB), "
          f"{args.provider}, {args.runs} runs each, interleaved")
    got: dict[str, list[float]] = {c: [] for c in CASES}
    for _ in range(args.runs):
        for case in CASES:
            got[case].append(_one(case, args.onnx, args.provider))
    for case in CASES:
        unit = "× the loop's rate alone" if case.startswith("GIL") else "s"
        print(f"| {case} | {', '.join(f'{v:.2f}' for v in got[case])} | median **{statistics.median(got[case]):.2f}** "
              f"{unit} |")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

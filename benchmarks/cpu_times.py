"""Where the suite's CPU goes: a pytest plugin that records each test's CPU seconds (this process and the children
it waited for, setup and teardown included) and wall seconds, and a reader that sums them by test and by file.

CPU seconds, not wall: on a shared machine wall time says how busy the machine was, CPU time what the test costs,
and the 2-core CI machine's wall time is about the sum of CPU seconds over 2 (issue 53: the suite under 8 minutes).

    PYTHONPATH=benchmarks CPU_TIMES_DIR=/tmp/cpu-times python -m pytest -n 2 --dist loadfile -p cpu_times ...
    python benchmarks/cpu_times.py /tmp/cpu-times [--top 40]

Each xdist worker appends one JSON line per test to CPU_TIMES_DIR/<worker>.jsonl: [nodeid, cpu_s, wall_s].
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections import defaultdict
from pathlib import Path

import pytest


def _cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = _cpu_seconds(), time.perf_counter()
    yield
    folder = Path(os.environ.get("CPU_TIMES_DIR", "cpu-times"))
    folder.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(folder / f"{worker}.jsonl", "a") as f:
        f.write(json.dumps([item.nodeid, _cpu_seconds() - cpu, time.perf_counter() - wall]) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    rows = [json.loads(line) for f in sorted(args.folder.glob("*.jsonl")) for line in f.read_text().splitlines()]
    total = sum(r[1] for r in rows)
    print(f"{len(rows)} tests, {total / 60:.1f} CPU-minutes ({total / 120:.1f} min over 2 cores)")
    by_file: dict[str, float] = defaultdict(float)
    for nodeid, cpu, *_ in rows:
        by_file[nodeid.split("::")[0]] += cpu
    print(f"\n{'CPU s':>8}  file (top {args.top})")
    for name, cpu in sorted(by_file.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"{cpu:8.1f}  {name}")
    print(f"\n{'CPU s':>8} {'wall s':>8}  test (top {args.top})")
    for nodeid, cpu, wall, *_ in sorted(rows, key=lambda r: -r[1])[:args.top]:
        print(f"{cpu:8.1f} {wall:8.1f}  {nodeid}")


if __name__ == "__main__":
    main()

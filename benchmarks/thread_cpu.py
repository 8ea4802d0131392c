"""Which threads of which processes burn the CPU: each thread's CPU seconds over a window, from /proc (Linux).

    python benchmarks/thread_cpu.py [--seconds 5] [--match cp_debug] [PID ...]
Without PIDs, every process whose command line holds --match. Printed per process: its CPU over the window (cores
busy), then its busiest threads, each named as Python's `threading` names it where py-spy (`py-spy dump`, at the
window's end) knows the thread, else "native" with the kernel's name for it (OpenMP, ONNX Runtime, CUDA's and Ray's
own threads): where a process spends CPU that its frames do not need (idle threads spinning, a busy-waiting sync),
and the CPU of its native threads against its Python ones.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> dict[int, tuple[str, int]]:
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(task.name)] = (comm, int(fields[11]) + int(fields[12]))  # utime + stime, ticks
    return out


def _pids(match: str) -> list[int]:
    me, found = os.getpid(), []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if match in cmd and int(p.name) != me:
            found.append(int(p.name))
    return sorted(found)


def _python_names(pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name, from `py-spy dump` (empty where py-spy is missing or fails)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {}
    try:
        text = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {int(tid): name for tid, name in re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', text, re.M)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pids", nargs="*", type=int)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--match", default="cp_debug")
    ap.add_argument("--top", type=int, default=10, help="threads shown a process")
    a = ap.parse_args()
    pids = a.pids or _pids(a.match)
    before = {pid: _threads(pid) for pid in pids}
    time.sleep(a.seconds)
    after = {pid: _threads(pid) for pid in pids}
    for pid in pids:
        used = {tid: ticks - before[pid].get(tid, (comm, 0))[1] for tid, (comm, ticks) in after[pid].items()}
        total = sum(used.values()) / TICK / a.seconds
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:100]
        except OSError:
            cmd = "?"
        py = _python_names(pid)
        kinds: Counter = Counter()
        for tid, ticks in used.items():
            kinds["python" if tid in py else "native"] += ticks
        split = ", ".join(f"{k} {v / TICK / a.seconds:.2f}" for k, v in kinds.items()) if py else "no py-spy"
        print(f"pid {pid}: {total:.2f} cores busy over {a.seconds:g} s ({len(used)} threads; {split})  {cmd}")
        for tid, ticks in sorted(used.items(), key=lambda kv: -kv[1])[:a.top]:
            if ticks:
                who = f'"{py[tid]}"' if tid in py else f"native ({after[pid][tid][0]})"
                print(f"    {ticks / TICK / a.seconds:6.2f}  {tid}  {who}")

if __name__ == "__main__":
    main()

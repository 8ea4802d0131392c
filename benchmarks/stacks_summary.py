"""py-spy's collapsed stacks (`--format raw`) summed by function: each thread's samples, and per function the samples
of the stacks it is on (inclusive) and at the top of (own), as seconds at the recording's rate.

    python benchmarks/stacks_summary.py PROF.txt [--rate 250] [--thread MainThread] [--top 50] [--match cp_debug]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("prof")
    ap.add_argument("--rate", type=float, default=250.0)
    ap.add_argument("--thread", default=None, help="only the threads whose name holds this")
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--match", default="", help="only functions whose frame text holds this")
    a = ap.parse_args()
    threads, inclusive, own = Counter(), Counter(), Counter()
    for line in open(a.prof, encoding="utf-8", errors="replace"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0]
        threads[thread] += n
        if a.thread and a.thread not in thread:
            continue
        names = [re.sub(r":\d+\)", ")", f) for f in frames[1:]]  # one entry a function, whatever its line
        for name in set(names):
            if a.match in name:
                inclusive[name] += n
        if names and a.match in names[-1]:
            own[names[-1]] += n
    print("threads (seconds):")
    for t, n in threads.most_common(12):
        print(f"  {n / a.rate:8.2f}  {t}")
    print(f"\ninclusive (seconds){' of ' + a.thread if a.thread else ''}:")
    for name, n in inclusive.most_common(a.top):
        print(f"  {n / a.rate:8.2f}  {name[:150]}")
    print("\nown:")
    for name, n in own.most_common(a.top // 2):
        print(f"  {n / a.rate:8.2f}  {name[:150]}")


if __name__ == "__main__":
    main()

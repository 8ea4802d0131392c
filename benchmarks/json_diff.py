"""Two runs' JSON files key by key: every key path where they differ, timings and the machine's state aside.

    python benchmarks/json_diff.py BEFORE AFTER [--ignore REGEX ...] [--show N]

BEFORE and AFTER are JSON files, or folders compared file by file (every *.json below them, by relative path). A
key is ignored where its name matches a default pattern (wall and step times, dates, the reference store's budget
and peaks taken from the free memory, whether the export cache was hit) or one given with --ignore; a string that
holds BEFORE's or AFTER's own folder is compared with that folder replaced. Lists are compared element by element
(their lengths must agree). Exit 0 when nothing differs, 1 otherwise. What issue 47's "the JSON of bisect, sweep,
fix and a kit is identical key by key before and after" was checked with.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

DEFAULT_IGNORE = (
    r"(^|_)(s|seconds|wall_s|ms|latency_ms|took|elapsed)$",  # times
    r"^(written_at|created|date|started|finished)$",  # dates
    r"^(budget_mb|device_budget_mb|peak_in_memory_bytes|peak_on_device_bytes|spilled_bytes)$",  # free memory
    r"^peak_memory$",  # the process's peak RSS and GPU memory
    r"^(export_cache|fp16_cache|cache)$",  # a cache hit or miss: the second run finds what the first stored
    r"^(environment|third_party_warnings)$",  # the machine's libraries and what they printed
)


def walk(a, b, path: str, out: list[str], ignore: list[re.Pattern], roots: tuple[str, str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if any(p.search(str(key)) for p in ignore):
                continue
            if key not in a or key not in b:
                out.append(f"{path}/{key}: only in {'AFTER' if key not in a else 'BEFORE'}")
                continue
            walk(a[key], b[key], f"{path}/{key}", out, ignore, roots)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items before, {len(b)} after")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out, ignore, roots)
    elif isinstance(a, str) and isinstance(b, str):
        if a.replace(roots[0], "<DIR>") != b.replace(roots[1], "<DIR>"):
            out.append(f"{path}: {a[:80]!r} -> {b[:80]!r}")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    elif a != b or type(a) is not type(b):
        out.append(f"{path}: {a!r} -> {b!r}")


def files(root: Path) -> dict[str, Path]:
    if root.is_file():
        return {root.name: root}
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*.json"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--ignore", action="append", default=[], help="a key name pattern (regex) to leave out")
    ap.add_argument("--show", type=int, default=20, help="differences shown per file")
    args = ap.parse_args()
    ignore = [re.compile(p) for p in (*DEFAULT_IGNORE, *args.ignore)]
    fa, fb = files(args.before), files(args.after)
    if args.before.is_file() and args.after.is_file():
        fa, fb = {"": args.before}, {"": args.after}
    roots = (str(args.before if args.before.is_dir() else args.before.parent),
             str(args.after if args.after.is_dir() else args.after.parent))
    differ = 0
    for name in sorted(set(fa) | set(fb)):
        if name not in fa or name not in fb:
            print(f"{name}: only in {'AFTER' if name not in fa else 'BEFORE'}")
            differ += 1
            continue
        out: list[str] = []
        walk(json.loads(fa[name].read_text()), json.loads(fb[name].read_text()), "", out, ignore, roots)
        print(f"{name or args.before.name}: {'identical' if not out else f'{len(out)} difference(s)'}")
        for line in out[: args.show]:
            print(f"  {line}")
        differ += bool(out)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

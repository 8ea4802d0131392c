"""Two bisect JSON reports of the same run side by side: the same verdicts, and how far apart each row's figures are.

    python benchmarks/compare_reports.py BEFORE.json AFTER.json

Prints whether first divergent, root cause and outcome agree, the rows either report lacks, every row whose status
differs, and per figure the largest relative difference over the rows (0 where every row agrees). What issue 32's
"same verdicts and the same JSON numbers" was checked with (docs/measurements.md).
"""

from __future__ import annotations

import json
import math
import sys

FIGURES = ("max_abs", "rel_rmse", "share_beyond", "cosine", "amplification", "local_max_abs", "local_rel_rmse")


def rows(report: dict) -> dict[tuple[str, str], dict]:
    return {(label, row["probe"]): row for label, found in report["results"].items() for row in found}


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python benchmarks/compare_reports.py BEFORE.json AFTER.json", file=sys.stderr)
        return 2
    try:
        a, b = (json.loads(open(path).read()) for path in sys.argv[1:3])
        rows(a), rows(b)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        print(f"compare_reports: cannot read two bisect JSON reports ({type(err).__name__}: {err}); pass the files "
              "`cpdebug bisect --json` wrote", file=sys.stderr)
        return 2
    same = True
    for key in ("first_divergent", "root_cause", "outcome", "outcomes"):
        agree = a.get(key) == b.get(key)
        same &= agree
        print(f"{key}: {'same' if agree else f'{a.get(key)} -> {b.get(key)}'}")
    ra, rb = rows(a), rows(b)
    if set(ra) != set(rb):
        same = False
        print(f"rows only in one report: {sorted(set(ra) ^ set(rb))}")
    worst: dict[str, tuple[float, str]] = {f: (0.0, "") for f in FIGURES}
    for key in sorted(ra.keys() & rb.keys()):
        x, y = ra[key], rb[key]
        if x.get("status") != y.get("status"):
            same = False
            print(f"status of {key[1]} ({key[0]}): {x.get('status')} -> {y.get('status')}")
        for f in FIGURES:
            u, v = x.get(f), y.get(f)
            if isinstance(u, (int, float)) and isinstance(v, (int, float)) and math.isfinite(u) and math.isfinite(v):
                r = abs(u - v) / max(abs(u), abs(v), 1e-30)
                if r > worst[f][0]:
                    worst[f] = (r, key[1])
            elif repr(u) != repr(v):  # one side missing or not finite where the other differs
                worst[f] = (math.inf, key[1])
    print(f"{len(ra.keys() & rb.keys())} rows compared")
    for f, (r, probe) in worst.items():
        print(f"  {f:15s} largest relative difference {r:.3g}" + (f" ({probe})" if probe else ""))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Print how a sweep's frames ended, per candidate: outcome counts and each non-passing frame's reason and boxes.

    python benchmarks/sweep_outcomes.py OUT/sweep.json [OUT2/sweep.json …]

Used for the verdict calibration tables (issue 33's note): one line per sweep, then the frames that did not end
within precision, with what the detections did (lost/added and their scores, the largest centre shift).
"""

from __future__ import annotations

import json
import sys
from collections import Counter


def main(paths: list[str]) -> None:
    for path in paths:
        d = json.load(open(path))
        print(f"== {path}: mode {d.get('tolerance_mode')}, run outcome {d.get('outcome')}")
        by_cand: dict[str, Counter] = {}
        for f in d["frames"]:
            for cand, c in (f.get("candidates") or {}).items():
                by_cand.setdefault(cand, Counter())[c.get("outcome")] += 1
        for cand, counts in by_cand.items():
            print(f"   {cand}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=str)))
        for f in d["frames"]:
            for cand, c in (f.get("candidates") or {}).items():
                if c.get("outcome") in ("within_precision", None):
                    continue
                det = (f.get("detections") or {}).get(cand) or {}
                print(f"   {f['token']} {cand}: {c.get('outcome')}: {c.get('reason')} | lost {det.get('lost')} "
                      f"{[round(s, 3) for s in det.get('lost_scores', [])]} added {det.get('added')} "
                      f"{[round(s, 3) for s in det.get('added_scores', [])]} "
                      f"shift {det.get('max_centre_shift', 0):.3g} m"
                      f" dscore {det.get('max_score_change', 0):.3g} dyaw {det.get('max_yaw_change', 0):.3g}")


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env bash
# GPU check of issue #9: every candidate of a multi-candidate run gets exactly its single-candidate results
# (awml-base, synthetic scan), for the default memory budget. Runs two processes at a time on the GPU machine.
# Usage (device machine, repo root, onnxruntime-gpu on PYTHONPATH): bash benchmarks/gpu_isolation.sh OUTDIR
set -u
out=$1; mkdir -p "$out"
export PYTHONUNBUFFERED=1
ref=torch-cuda; cands=(torch-cuda-fp16 ort-cuda-fp16 ort-cuda-int8)
run() { local name=$1; shift; local t0=$(date +%s)
  python3 -m cp_debug.cli.main bisect --preset awml-base --json "$out/$name.json" --quiet "$@" > "$out/$name.txt" 2>&1
  echo "== $name: exit $?, wall $(( $(date +%s) - t0 )) s" >> "$out/summary.txt"; }
all=$(IFS=,; echo "$ref,${cands[*]}")
run multi --backends "$all" & run "single_${cands[0]}" --backends "$ref,${cands[0]}" & wait
run "single_${cands[1]}" --backends "$ref,${cands[1]}" & run "single_${cands[2]}" --backends "$ref,${cands[2]}" & wait
python3 - "$out" "${cands[@]}" <<'PY' | tee -a "$out/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1]); multi = json.loads((out / "multi.json").read_text())
skip = {"probe"}
for cand in sys.argv[2:]:
    single = json.loads((out / f"single_{cand}.json").read_text())
    s = {r["probe"]: r for r in single["results"][cand]}; m = {r["probe"]: r for r in multi["results"][cand]}
    diff = [p for p in s if p not in m or {k: v for k, v in s[p].items() if k not in skip} != {k: v for k, v in m[p].items() if k not in skip}]
    worst = max((abs((m[p].get("rel_rmse") or 0) - (s[p].get("rel_rmse") or 0)), p) for p in diff if p in m) if any(p in m for p in diff) else None
    same = all(single[k][cand] == multi[k][cand] for k in ("first_divergent", "root_cause", "paths"))
    print(f"{cand}: {len(s)} probes in the single run, {len(s) - len(diff)} identical in the multi run, "
          f"{len(diff)} differ{f' (largest rel_rmse change {worst[0]:.3g} at {worst[1]})' if worst else ''}; "
          f"verdicts {'identical' if same else 'DIFFER'}: first divergent {multi['first_divergent'][cand]}, "
          f"root cause {(multi['root_cause'][cand] or {}).get('probe')}")
PY

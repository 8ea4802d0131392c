#!/usr/bin/env bash
# Issue 70's "CenterPoint's and TransFusion-L's sweeps, evals and fixes give the same reports as before": the same
# small runs of both recipes with the code of a tree, their JSON kept in OUT, for benchmarks/json_diff.py:
#   bash benchmarks/recipe_reports.sh TREE OUT      (TREE: a checkout; its code first on PYTHONPATH)
#   python benchmarks/json_diff.py OUT_BEFORE OUT_AFTER
set -u
tree=$(cd "$1" && pwd); out=$2; mkdir -p "$out"
run() { local tag=$1; shift; local t0=$SECONDS
  (cd "$out" && PYTHONPATH="$tree" python3 -m cp_debug.cli.main "$@" > "$tag.log" 2>&1); echo "$tag: exit $? ($((SECONDS - t0)) s)"; }
run cp_sweep sweep --preset demo --backends torch,ort-cpu-fp16 --n 4 --bisect-top 1 --out cp_sweep --no-html --quiet
run cp_eval eval --preset demo --backends torch,ort-cpu-fp16 --n 4 --json cp_eval.json
run cp_fix fix --preset demo --backends torch,ort-cpu-fp16 --n 4 --out cp_fix --quiet
run tf_sweep sweep --recipe transfusion --preset transfusion-tiny --backends torch,ort-cpu-fp16 --n 4 --bisect-top 1 \
  --out tf_sweep --no-html --quiet
run tf_eval eval --recipe transfusion --preset transfusion-tiny --backends torch,ort-cpu-fp16 --n 4 --json tf_eval.json
run tf_fix fix --recipe transfusion --preset transfusion-tiny --backends torch,ort-cpu-fp16 --n 4 --out tf_fix --quiet
# CenterPoint's PTQ (its `ptq` plug-in) and an INT8 eval of what it wrote, and its stage-by-stage infer
run cp_quantize quantize --preset tiny --calib-n 4 --method max --eval-n 2 --out cp_ptq --json cp_quantize.json --quiet
run cp_eval_int8 eval --preset tiny --backends torch,ort-cpu-int8 --int8 cp_ptq --n 2 --json cp_eval_int8.json
run cp_infer infer --preset demo --backbone ort --out cp_infer.npz --quiet

#!/usr/bin/env bash
# The GPU-machine runs behind issues 55 and 57 (after `source benchmarks/gpu_setup.sh`, which puts onnxruntime-gpu
# first on the path): the planted and healthy zoo transformers on CUDA lanes (torch's FP16 with its SDPA kernel,
# ONNX Runtime's CUDA FP16), and TransFusion-L on AWML's T4 grid (768 x 768 cells, 36,864 BEV keys per query).
#   bash benchmarks/gpu_any_model.sh [OUTDIR]
set -u
out=${1:-${OUT:-gpu-any}}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
b() { local name=$1; shift; local t0; t0=$(date +%s.%N)
  python3 -m cp_debug.cli.main bisect "$@" --json "$out/$name.json" > "$out/$name.txt" 2>&1
  local rc=$?
  echo "== $name: exit $rc, $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s wall: $*"
  grep -E "root cause|diverged at|within precision|degraded|attention|decision|detections|precision:|took" \
    "$out/$name.txt" | cut -c1-400 | head -24; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
b detr_planted --torch tests/zoo/models.py:build_detr_planted --backends torch-cuda,torch-cuda-fp16,ort-cuda-fp16
b text_planted --torch tests/zoo/models.py:build_text_planted --backends torch-cuda,torch-cuda-fp16,ort-cuda-fp16
b detr_healthy --torch tests/zoo/models.py:build_detr --backends torch-cuda,torch-cuda-fp16,ort-cuda-fp16 --level all
b tf_t4_ort --recipe transfusion --preset transfusion-t4-90m-768 --random-weights \
  --backends torch-cuda,ort-cuda,ort-cuda-fp16
b tf_t4_torch --recipe transfusion --preset transfusion-t4-90m-768 --random-weights \
  --backends torch-cuda,torch-cuda-tf32,torch-cuda-fp16
python3 - "$out" <<'PY'
import json, sys, pathlib
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    d = json.loads(p.read_text())
    for c in d.get("candidates", []):
        rc = (d.get("root_cause") or {}).get(c) or {}
        print(f"{p.stem:14} {c:16} outcome={d.get('outcomes', {}).get(c, d.get('outcome'))} first={d['first_divergent'].get(c)} "
              f"root={rc.get('probe')} attention={d['settings'].get('attention', {}) if isinstance(d['settings'].get('attention'), str) else ''}")
PY

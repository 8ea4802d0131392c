#!/usr/bin/env bash
# On the GPU device machine (issue 69): the zoo's diagnoses with CUDA backends, not the CPU's float16 emulation —
# HF BERT with a padding mask as a dynamo ONNX file, HF BERT / Llama with a planted QK^T overflow (default level and
# --level all), timm ConvNeXt's layer scale as an ONNX file, a sum of many in-range terms, and ultralytics YOLOv8n
# (healthy and planted) where it imports. Prints each run's exit, outcome, root cause (with its module) and hint.
# Set up first as benchmarks/gpu_setup.sh says; then:  source benchmarks/gpu_setup.sh && bash benchmarks/gpu_zoo.sh
set -u
W=$(mktemp -d); H=tests/zoo/hf_models.py; Z=tests/zoo/models.py
command -v cpdebug >/dev/null || cpdebug() { python3 -m cp_debug.cli.main "$@"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, onnxruntime as o, transformers, timm; print(torch.__version__, o.__version__, o.get_device(), transformers.__version__, timm.__version__)"
run() { local tag=$1; shift; local t0=$SECONDS; cpdebug "$@" --json "$W/$tag.json" > "$W/$tag.out" 2> "$W/$tag.err"
  local rc=$?; echo "$tag: exit $rc ($((SECONDS - t0)) s): cpdebug $*"; [ -f "$W/$tag.json" ] || { tail -n 3 "$W/$tag.err"; return; }
  python3 - "$W/$tag.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for c, o in (d.get("outcomes") or {}).items():
    r = (d.get("root_cause") or {}).get(c) or {}
    print(f"   {c}: {o} | first {d['first_divergent'].get(c)} | root {r.get('probe')} module {r.get('module')}")
    print(f"   hint: {(r.get('hint') or '')[:240]}")
    print(f"   why: {(d.get('outcome_reasons') or {}).get(c)}"[:260])
PY
}
python3 - "$W" <<'PY'
import sys, numpy as np, torch
sys.path.insert(0, "."); from tests.zoo import hf_models, planted_export
from pathlib import Path
for name, build in (("bert_masked", hf_models.build_bert_masked), ("convnext", planted_export.build_convnext)):
    d = Path(sys.argv[1]) / name; d.mkdir()
    planted_export.onnx_with_inputs(*build(), d)
PY
run bert_masked_all bisect --onnx "$W/bert_masked/model.onnx" --inputs "$W/bert_masked/x.npz" --backends ort-cuda,ort-cuda-fp16 --level all
run convnext bisect --onnx "$W/convnext/model.onnx" --inputs "$W/convnext/x.npz" --backends ort-cuda,ort-cuda-fp16
for b in build_bert_planted build_llama_planted; do
  run $b bisect --torch $H:$b --backends torch-cuda,ort-cuda-fp16,torch-cuda-fp16
  run ${b}_all bisect --torch $H:$b --backends torch-cuda,ort-cuda-fp16 --level all
done
run text_all bisect --torch $Z:build_text_planted --backends torch-cuda,ort-cuda-fp16 --level all
run long_sum bisect --torch $Z:build_long_sum_planted --backends torch-cuda,ort-cuda-fp16,torch-cuda-fp16
if python3 -c "import ultralytics" 2>/dev/null; then
  run yolo bisect --torch tests/zoo/yolo_models.py:build_yolo --backends torch-cuda,ort-cuda-fp16,torch-cuda-fp16
  run yolo_all bisect --torch tests/zoo/yolo_models.py:build_yolo --backends torch-cuda,ort-cuda-fp16 --level all
  run yolo_planted bisect --torch tests/zoo/yolo_models.py:build_yolo_planted --backends torch-cuda,ort-cuda-fp16
else echo "ultralytics: not importable here, YOLOv8n not run"; fi

#!/usr/bin/env bash
# On the GPU device machine (issue 68, item 4): the user's path to the cure with ONNX Runtime's CUDA EP in float16,
# on models no one here wrote (tests/zoo/hf_models.py: HF BERT, Llama; timm's ResNet as a dynamo ONNX file), and a
# set found on the CPU re-checked on CUDA (`fix --check DIR --device cuda`). Prints each step's exit code and the set.
# Set up first as benchmarks/gpu_setup.sh says; then:  source benchmarks/gpu_setup.sh && bash benchmarks/gpu_cure.sh
set -u
OUT=${OUT:-/tmp/gpu_cure}; mkdir -p "$OUT"; W=$(mktemp -d); Z=tests/zoo/hf_models.py
command -v cpdebug >/dev/null || cpdebug() { python3 -m cp_debug.cli.main "$@"; }  # the device runs the tree as is
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, onnxruntime as o, transformers, timm; print(torch.__version__, o.__version__, o.get_device(), transformers.__version__, timm.__version__)"
step() { local tag=$1; shift; local t0=$SECONDS; cpdebug "$@" > "$W/$tag.out" 2> "$W/$tag.err"; local rc=$?
  echo "$tag: exit $rc ($((SECONDS - t0)) s): cpdebug $*"; tail -n 3 "$W/$tag.err" | grep -i error; }
keep_of() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(','.join(d['keep'] or []))" "$1"; }
show() { python3 -c "
import json,sys; d=json.load(open(sys.argv[1]))
print('   outcome', d.get('outcome'), '| first', d.get('first_divergent'), '| root', {k: (v or {}).get('probe') for k, v in (d.get('root_cause') or {}).items()})
print('   ran', {k: (v or {}).get('effective') for k, v in (d.get('precision') or {}).items()})" "$1"; }
# models: FILE.py:FUNC arguments (default: HF BERT and Llama, and the zoo's DETR-like model, whose QK^T overflow
# ONNX Runtime's CUDA EP cannot fold away: its MultiheadAttention scales q before the MatMul)
models=("$@"); [ ${#models[@]} -gt 0 ] || models=($Z:build_bert_planted $Z:build_llama_planted tests/zoo/models.py:build_detr_planted)
for m in "${models[@]}"; do
  b=${m##*:}
  step "$b.bisect" bisect --torch $m --backends torch-cuda,ort-cuda-fp16 --json "$W/$b.bisect.json"; show "$W/$b.bisect.json"
  step "$b.keep" keep-fp32 --torch $m --backends ort-cuda-fp16 --json "$W/$b.keep.json"
  keep=$(keep_of "$W/$b.keep.json"); echo "   keep: $keep"
  python3 -c "import json,sys; print('   modules', json.load(open(sys.argv[1]))['modules'])" "$W/$b.keep.json"
  step "$b.confirm" bisect --torch $m --backends torch-cuda,ort-cuda-fp16 --keep-fp32 "$keep" --json "$W/$b.confirm.json"
  show "$W/$b.confirm.json"
  step "$b.fix" fix --torch $m --backends ort-cuda-fp16 --out "$W/$b.fix" --quiet
  fixed() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('   fix', d['status'], d['set']['keep_fp32'], d['set']['modules'], 'holds', d['verification']['holds'])" "$1"; }
  fixed "$W/$b.fix/fix.json"
  step "$b.check" fix --check "$W/$b.fix" --quiet; tail -n 2 "$W/$b.check.out"
  # a set found on the CPU, re-checked on CUDA's float16
  step "$b.fixcpu" fix --torch $m --backends ort-cpu-fp16 --out "$W/$b.fixcpu" --quiet; fixed "$W/$b.fixcpu/fix.json"
  step "$b.checkcuda" fix --check "$W/$b.fixcpu" --device cuda --quiet; tail -n 2 "$W/$b.checkcuda.out"
done
[ $# -gt 0 ] && exit 0  # the ONNX file's path runs with the default models
python3 - "$W" <<'PY'
import sys, numpy as np, torch
sys.path.insert(0, "tests/zoo"); import hf_models
net, inputs = hf_models.build_timm_planted()
torch.onnx.export(net, inputs, dynamo=True).save(f"{sys.argv[1]}/resnet.onnx"); np.savez(f"{sys.argv[1]}/x.npz", x=inputs[0].numpy())
PY
M=(--onnx "$W/resnet.onnx" --inputs "$W/x.npz")
step onnx.bisect bisect "${M[@]}" --backends ort-cuda,ort-cuda-fp16 --json "$W/onnx.bisect.json"; show "$W/onnx.bisect.json"
step onnx.keep keep-fp32 "${M[@]}" --backends ort-cuda-fp16 --json "$W/onnx.keep.json"; keep=$(keep_of "$W/onnx.keep.json"); echo "   keep: $keep"
step onnx.confirm bisect "${M[@]}" --backends ort-cuda,ort-cuda-fp16 --keep-fp32 "$keep" --json "$W/onnx.confirm.json"
show "$W/onnx.confirm.json"
step onnx.fix fix "${M[@]}" --backends ort-cuda-fp16 --out "$W/onnx.fix" --quiet
step onnx.check fix --check "$W/onnx.fix" --quiet; tail -n 2 "$W/onnx.check.out"
tar czf "$OUT/gpu_cure_logs.tgz" -C "$W" --exclude='*.onnx' --exclude='*.npz' . 2>/dev/null

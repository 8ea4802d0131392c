#!/usr/bin/env bash
# Issue 87 on one GPU host (one call, after benchmarks/gpu_setup.sh's staging and Ray's parts in /tmp/stage):
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_issue87.sh OUT [FRAMES] [WORKERS]
# 1. ray_scaling.py: FRAMES awml-base frames (torch-cuda,ort-cuda-fp16 --level block) in process, then on 1, 2, 3 Ray
#    workers sharing the card(s) (`--ray-workers` beyond the cards: up to 4 a card), each with its GPU utilisation;
# 2. py-spy (where installed) over an in-process sweep of 150 frames: every thread, idle frames too, 200 Hz, as
#    collapsed stacks (OUT/sweep.prof.txt), for where a frame's time goes on the host.
set -u
out=${1:-/tmp/issue87}; frames=${2:-300}; workers=${3:-1,2,3}
mkdir -p "$out"
source "$(dirname "$0")/gpu_ray_mps.sh"
ray_install
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import ray, torch, onnxruntime as o; print('ray', ray.__version__, 'torch', torch.__version__, 'ort', o.__version__)"
python3 benchmarks/ray_scaling.py --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block \
  --frames "$frames" --workers "$workers" --time-limit "${TIME_LIMIT:-400}" --out "$out/rs" 2>&1 | tee "$out/scaling.txt"
spy=$(command -v py-spy || ls /tmp/site/bin/py-spy 2>/dev/null)
if [ -n "$spy" ]; then
  rm -rf /tmp/prof_sweep
  CUDA_VISIBLE_DEVICES=0 CPDEBUG_SERVER=off "$spy" record --rate 200 --idle --threads --format raw \
    -o "$out/sweep.prof.txt" -- python3 -m cp_debug.cli.main sweep --preset awml-base \
    --backends torch-cuda,ort-cuda-fp16 --level block --n 150 --bisect-top 0 --no-html --out /tmp/prof_sweep \
    > "$out/prof.log" 2>&1
  echo "py-spy exit $?: $(wc -l < "$out/sweep.prof.txt") stacks"
fi

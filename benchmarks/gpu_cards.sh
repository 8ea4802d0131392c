#!/usr/bin/env bash
# Issue 87's scaling on a host of 2 or 4 GPUs (one device call each step; after benchmarks/gpu_setup.sh's staging
# and Ray's parts in /tmp/stage):
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_cards.sh OUT [FRAMES] [CARDS] [STEP]
# STEP "inproc": FRAMES awml-base frames in process (no MPS: the issue's baseline); STEP "cards" (default: both):
# an NVIDIA MPS control daemon of this script's own (pipe and log under /tmp, the cards' compute mode left as it is,
# stopped at the end), then `--ray local` sweeps seeing 1, 2, 4 cards with the sweep's default actors a card (four
# under MPS), each report compared with the in-process one (benchmarks/ray_scaling.py, --resume on OUT).
set -u
out=${1:-/tmp/issue87_cards}; frames=${2:-1000}; cards=${3:-}; step=${4:-both}
n=$(nvidia-smi -L | wc -l)
cards=${cards:-$(for c in 1 2 4; do [ "$c" -le "$n" ] && printf '%s,' "$c"; done | sed 's/,$//')}
source "$(dirname "$0")/gpu_ray_mps.sh"
ray_install
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader
args=(--preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block --frames "$frames" --workers ""
      --out "$out" --resume --time-limit "${TIME_LIMIT:-540}")
if [ "$step" != cards ]; then
  python3 benchmarks/ray_scaling.py "${args[@]}" --cards ""
fi
if [ "$step" != inproc ]; then
  mps_start
  python3 benchmarks/ray_scaling.py "${args[@]}" --no-in-process --cards "$cards"
  mps_stop
fi

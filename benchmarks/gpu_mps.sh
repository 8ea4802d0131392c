#!/usr/bin/env bash
# Issue 87: Ray workers sharing one card, with and without NVIDIA MPS (one call, after gpu_setup.sh and Ray's parts):
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_mps.sh OUT [FRAMES] [WORKERS]
# First without MPS (the baseline on this machine), then with an MPS control daemon of this call's own (its pipe and
# log folders under /tmp, stopped at the end; the card's compute mode is left as it is), each configuration a fresh
# `cpdebug sweep` through benchmarks/ray_scaling.py. Where the image has no nvidia-cuda-mps-control it says so.
set -u
out=${1:-/tmp/issue87_mps}; frames=${2:-300}; workers=${3:-1,2,3}
mkdir -p "$out"
source "$(dirname "$0")/gpu_ray_mps.sh"
ray_install
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader
run() {  # $1: name, rest: ray_scaling.py arguments
  local name=$1; shift
  python3 benchmarks/ray_scaling.py --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block \
    --frames "$frames" --out "$out/$name" "$@" 2>&1 | tee "$out/$name.txt"
}
TIME_LIMIT=${TIME_LIMIT:-250}
run plain --no-in-process --workers 1,2 --time-limit "$TIME_LIMIT"
mps_start || { echo "MPS not measured"; exit 0; }
run mps --no-in-process --workers "$workers" --time-limit "$TIME_LIMIT"
mps_stop
cp "$CUDA_MPS_LOG_DIRECTORY"/control.log "$out/mps_control.log" 2>/dev/null || true

#!/usr/bin/env bash
# Why a sweep's second card runs below the first (issue 87, item 3), on a host of 2 cards, after
# benchmarks/gpu_setup.sh and Ray's staged parts:
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_card_pair.sh OUT [FLOOR_FRAMES] [SWEEP_FRAMES] [PARTS]
# PARTS (default "floor sweep"): floor — the two backends' plain pipelines (gpu_card_floor.py) on one card and on both
# at once, 4 processes a card under NVIDIA MPS, then 2 a card without it; sweep — `--ray local` on 1 and 2 cards under
# MPS (ray_scaling.py, its steps kept). If the plain pipelines lose the same share on two cards, the host is what
# holds the second card back, not the sweep around them.
set -u
out=${1:-/tmp/card_pair}; floor=${2:-150}; frames=${3:-1000}; parts=${4:-floor sweep}
source "$(dirname "$0")/gpu_ray_mps.sh"
python3 -c "import ray" 2>/dev/null || ray_install
nvidia-smi --query-gpu=index,name,driver_version,pci.bus_id --format=csv,noheader
nvidia-smi topo -m 2>/dev/null | head -6
lscpu | grep -E "^(Model name|Thread|Core|Socket|NUMA node)"
for part in $parts; do
  case $part in
    floor)
      mps_start
      echo "== plain pipelines, MPS"
      python3 benchmarks/gpu_card_floor.py --frames "$floor" --procs 4 --cards 1,2
      mps_stop; sleep 2
      echo "== plain pipelines, no MPS"
      python3 benchmarks/gpu_card_floor.py --frames "$floor" --procs 2 --cards 1,2 ;;
    sweep)
      mps_start
      echo "== sweep --ray local, MPS"
      python3 benchmarks/ray_scaling.py --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block \
        --frames "$frames" --workers "" --no-in-process --cards 1,2 --time-limit 540 --out "$out/sweep" 2>&1 | grep "^ray"
      mps_stop ;;
  esac
done

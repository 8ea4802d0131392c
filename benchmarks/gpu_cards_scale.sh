#!/usr/bin/env bash
# The sweep on 1, 2, 4 … cards of one host (issue 87, item 3), after benchmarks/gpu_setup.sh and Ray's staged parts:
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_cards_scale.sh OUT FRAMES CARDS [TIME_LIMIT] [SERVED]
# `--ray local` under NVIDIA MPS (four actors a card), awml-base, torch-cuda,ort-cuda-fp16 --level block, each card
# count a fresh sweep (benchmarks/ray_scaling.py). The host's caches are filled first, once a host, by an 8-frame sweep
# in process (the export cache, numba's kernels, bytecode: a fresh host's first Ray sweep spent 12 s of its actors'
# warm-up compiling numba's kernels, four at once), so that no card count pays them. Its figures are kept in
# /tmp/cards_scale-FRAMES on the host, so a second call on the same warm host with other CARDS adds to them (and
# compares their reports with the first's); the summary is copied to OUT. SERVED=N: each card count's sweep through a
# `cpdebug serve` of its own, after an N-frame sweep through it that leaves its Ray workers up (`sweep/kept.py`).
set -u
out=${1:-/tmp/cards_scale_out}; frames=${2:-1000}; cards=${3:-1,2,4}; limit=${4:-560}; served=${5:-0}
here=/tmp/cards_scale-$frames; [ "$served" = 0 ] || here=$here-served
source "$(dirname "$0")/gpu_ray_mps.sh"
python3 -c "import ray" 2>/dev/null || ray_install
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader
if [ ! -f /tmp/cpdebug-caches-warm ]; then
  t0=$(date +%s)
  CPDEBUG_SERVER=off CUDA_VISIBLE_DEVICES=0 python3 -m cp_debug.cli.main sweep --preset awml-base \
    --backends torch-cuda,ort-cuda-fp16 --level block --n 8 --bisect-top 0 --no-html --out /tmp/cards_warm \
    >/dev/null 2>&1; echo "caches filled (an 8-frame sweep in process, exit $?): $(( $(date +%s) - t0 )) s"
  touch /tmp/cpdebug-caches-warm
fi
mps_start
python3 benchmarks/ray_scaling.py --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block \
  --frames "$frames" --workers "" --no-in-process --cards "$cards" --time-limit "$limit" --resume --served "$served" \
  --out "$here" 2>&1 | grep -E "^(ray|served|[0-9]+ frames)"
mps_stop
mkdir -p "$out" && cp "$here/summary.json" "$out/summary-$frames$([ "$served" = 0 ] || echo -served).json"

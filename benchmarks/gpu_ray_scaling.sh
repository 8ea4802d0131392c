#!/usr/bin/env bash
# Issue 71's scaling run on a GPU host of 2 or 4 cards (nvidia-h100-x4 / -x2, or the H200 ones), one device call:
# 1000 synthetic awml-base frames in process, then through a local Ray cluster on 1, 2 (and 4) workers, one card each,
# and 2 workers with one actor killed mid-sweep; each configuration's figures printed as it ends (benchmarks/
# ray_scaling.py says which). Set up first as benchmarks/gpu_setup.sh says, with Ray's dependencies among the staged
# deps (`bash ../shared/tools/stage-device-wheels.sh jsonschema jsonschema-specifications referencing rpds-py msgpack`)
# and the ray 2.60.0 cp312 manylinux2014 wheel (~79 MB) split like ort.part* into .whl/ray.partNN (the main checkout's
# .whl holds ray.part00-02), each part carried and copied to /tmp/stage/ on the device as the ORT parts are. Then:
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_ray_scaling.sh [OUT] [FRAMES] [WORKERS]
# OUT defaults to /tmp/ray_scaling, FRAMES to 1000, WORKERS to every card count of 1, 2, 4 the host has. A call cut
# short by the device's 10 minutes keeps what it measured in OUT/summary.json: the same command again (RESUME=1, on
# the same warm machine) measures only the configurations still missing.
set -u
out=${1:-/tmp/ray_scaling}; frames=${2:-1000}
n=$(nvidia-smi -L | wc -l)
workers=${3:-$(for w in 1 2 4; do [ "$w" -le "$n" ] && printf '%s,' "$w"; done | sed 's/,$//')}
source "$(dirname "$0")/gpu_ray_mps.sh"
ray_install
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
git log --oneline -1 2>/dev/null || true
python3 -c "import ray, torch, onnxruntime as o; print('ray', ray.__version__, 'torch', torch.__version__, 'ort', o.__version__)"
python3 benchmarks/ray_scaling.py --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block \
  --frames "$frames" --workers "$workers" --kill --time-limit "${TIME_LIMIT:-500}" --out "$out" \
  ${RESUME:+--resume}

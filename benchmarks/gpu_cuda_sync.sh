#!/usr/bin/env bash
# CUDA's context scheduling in a sweep's Ray actors (issue 87): `--ray local` under NVIDIA MPS on 1 and CARDS cards,
# with CUDA's own scheduling ("auto": a waiting thread spins) and with CPDEBUG_CUDA_SYNC=blocking, in turn, after
# benchmarks/gpu_setup.sh and Ray's staged parts:
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_cuda_sync.sh OUT [FRAMES] [CARDS] [MODES]
# Each line of benchmarks/ray_scaling.py: the wall, frames/s once the sessions were open, GPU utilisation, the CPU the
# sweep's processes spent, and whether the report equals the first configuration's.
set -u
out=${1:-/tmp/cuda_sync}; frames=${2:-600}; cards=${3:-1,2}; modes=${4:-auto blocking auto}
source "$(dirname "$0")/gpu_ray_mps.sh"
python3 -c "import ray" 2>/dev/null || ray_install
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
lscpu | grep -E "^(Model name|Thread|Core|Socket)"
mps_start
i=0
for mode in $modes; do
  i=$((i + 1))
  echo "== CPDEBUG_CUDA_SYNC=$mode"
  CPDEBUG_CUDA_SYNC=$mode python3 benchmarks/ray_scaling.py --preset awml-base --backends torch-cuda,ort-cuda-fp16 \
    --level block --frames "$frames" --workers "" --no-in-process --cards "$cards" --time-limit 500 \
    --out "$out/$i-$mode" 2>&1 | grep "^ray" | sed -E 's/; actors began.*the driver ran/; the driver ran/'
done
mps_stop
python3 - "$out" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from ray_scaling import _numbers
runs = sorted(p.parent for p in Path(sys.argv[1]).glob("*/*/sweep.json"))
first = _numbers(runs[0])
for run in runs:
    print(f"{run.parent.name}/{run.name}: report {'identical to' if _numbers(run) == first else 'DIFFERS from'} "
          f"{runs[0].parent.name}/{runs[0].name}'s")
PY

#!/usr/bin/env bash
# The GPU-machine runs behind the issue notes: stage-by-stage CenterPoint on torch CUDA, then bisects.
# Usage (on the device machine, repo root, PYTHONPATH set): bash benchmarks/gpu_run.sh torch|ort OUTDIR
set -u
what=$1; out=$2; mkdir -p "$out"
export PYTHONUNBUFFERED=1
run() { local name=$1; shift; local t0=$(date +%s.%N)
  python3 -m cp_debug.cli.main bisect --preset awml-base --json "$out/$name.json" --quiet "$@" > "$out/$name.txt" 2>&1
  local rc=$?; local t1=$(date +%s.%N)
  echo "== bisect $name: exit $rc, wall $(python3 -c "print(round($t1-$t0,1))") s"; tail -n 60 "$out/$name.txt"; }
if [ "$what" = torch ]; then
  python3 benchmarks/centerpoint_stages.py --preset awml-base --backends torch,torch-cuda,torch-cuda-tf32,torch-cuda-fp16 --repeat 3 2>&1 | grep -v "^W1" | tee "$out/stages.txt"
  run cuda_vs_tf32 --backends torch-cuda,torch-cuda-tf32
  run cuda_vs_fp16 --backends torch-cuda,torch-cuda-fp16
else
  run cpu_vs_ortcuda --backends torch,ort-cuda
  run cpu_vs_ortcuda_fp16 --backends torch,ort-cuda-fp16
fi

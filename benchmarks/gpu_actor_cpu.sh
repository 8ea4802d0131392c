#!/usr/bin/env bash
# Where a sweep's CPU goes while its frames run (issue 87: a Ray actor spent ~0.7 CPU-s a frame against the in-process
# sweep's ~0.26), on one GPU host after benchmarks/gpu_setup.sh and Ray's staged parts:
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_actor_cpu.sh OUT [FRAMES]
# An awml-base sweep (`torch-cuda,ort-cuda-fp16 --level block`) in process, then `--ray local` on card 0 under NVIDIA
# MPS (four actors); in each, once the frames run (sweep.json's progress: its first shard written), each process's
# busiest threads over 6 s (benchmarks/thread_cpu.py: Python's names from py-spy, else "native"). The Ray run again
# with each of RAY_ENVS' environments (e.g. RAY_ENVS="OMP_WAIT_POLICY=PASSIVE"; one "K=V,K=V" per run, space apart).
set -u
export PATH=/tmp/site/bin:$PATH
out=${1:-/tmp/actor_cpu}; frames=${2:-600}
source "$(dirname "$0")/gpu_ray_mps.sh"
python3 -c "import ray" 2>/dev/null || ray_install
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
sweep() {  # sweep DIR [EXTRA...]: in the background; returns when its first shard is on disk
  local dir=$1; shift
  rm -rf "$dir"
  CPDEBUG_SERVER=off CUDA_VISIBLE_DEVICES=0 python3 -m cp_debug.cli.main sweep --preset "${PRESET:-awml-base}" \
    --backends "${BACKENDS:-torch-cuda,ort-cuda-fp16}" --level block --n "$frames" --bisect-top 0 --no-html --out "$dir" "$@" \
    > "$dir.log" 2>&1 &
  sweep_pid=$!
  for _ in $(seq 600); do
    [ -n "$(ls "$dir"/shards 2>/dev/null)" ] && break
    sleep 0.2
  done
  sleep 3
}
sweep "$out/in_process"
echo "== in process, frames running"
python3 benchmarks/thread_cpu.py --seconds 6 "$sweep_pid"
wait $sweep_pid; echo "in process: exit $?"
mps_start || true
for extra in "" ${RAY_ENVS:-}; do
  (export ${extra//,/ } CPDEBUG_NOTHING=1
   sweep "$out/ray" --ray local
   echo "== Ray, one card, frames running${extra:+, with $extra}"
   python3 benchmarks/thread_cpu.py --seconds 6 --match "ActorBody" --top 6
   python3 benchmarks/thread_cpu.py --seconds 3 --top 4 "$sweep_pid"
   wait $sweep_pid; echo "ray: exit $?"; python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['settings']['executor']; print('frames phase', round(e['frames_seconds'],1), 's; sessions open at', round(e['sessions_seconds'],1), 's')" "$out/ray/sweep.json")
done
mps_stop 2>/dev/null || true

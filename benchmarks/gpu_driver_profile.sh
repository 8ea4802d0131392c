#!/usr/bin/env bash
# Where a many-card `--ray local` sweep's driver spends its time (issue 87, item 3), after gpu_setup.sh and Ray's
# parts in /tmp/stage:
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_driver_profile.sh OUT [FRAMES]
# One awml-base sweep (torch-cuda,ort-cuda-fp16 --level block, no bisect) on every card under an NVIDIA MPS daemon of
# this script's own, four actors a card; py-spy over the driver (every thread, 100 Hz, collapsed stacks in
# OUT/driver.prof.txt: `python benchmarks/stacks_summary.py OUT/driver.prof.txt`) and, every 2 s, the CPU share of
# the driver and of each actor (`ps`, OUT/cpu.txt) and each card's utilisation (OUT/gpu.txt).
set -u
out=${1:-/tmp/driver_profile}; frames=${2:-1000}
mkdir -p "$out"
source "$(dirname "$0")/gpu_ray_mps.sh"
ray_install
spy=$(command -v py-spy || ls /tmp/site/bin/py-spy 2>/dev/null)
mps_start
export CPDEBUG_SERVER=off
python3 -m cp_debug.cli.main sweep --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block \
  --n "$frames" --bisect-top 0 --no-html -q --ray local --out "$out/sweep" > "$out/sweep.log" 2>&1 &
driver=$!
sleep 1
"$spy" record --pid "$driver" --rate 100 --threads --format raw -o "$out/driver.prof.txt" > "$out/spy.log" 2>&1 &
while kill -0 "$driver" 2>/dev/null; do
  { date +%T; ps -eo pid,pcpu,rss,args --sort=-pcpu | grep -E "cp_debug|ray::ActorBody" | grep -v grep | head -20 \
    | cut -c1-120; } >> "$out/cpu.txt"
  { date +%T; nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits | paste -sd' '; } >> "$out/gpu.txt"
  sleep 2
done
wait "$driver"; echo "sweep exit $?"
sleep 2
mps_stop
python3 - "$out/sweep/sweep.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["settings"]["executor"]
print({k: e.get(k) for k in ("workers", "frames_seconds", "sessions_seconds", "chunks", "driver_lane")})
PY

#!/usr/bin/env bash
# Issue 87's scaling, this tree beside another tree's cp_debug on the same GPU host, in one device call (after
# benchmarks/gpu_setup.sh's staging and Ray's parts in /tmp/stage):
#   source benchmarks/gpu_setup.sh && bash benchmarks/gpu_cards_ab.sh OUT OTHER [FRAMES] [CARDS]
# OTHER: a folder holding another cp_debug (`git archive COMMIT cp_debug | tar -x -C OTHER`). FRAMES awml-base frames
# in process (this tree, no MPS: the issue's baseline), then under an NVIDIA MPS daemon of this script's own the
# `--ray local` sweeps seeing each of CARDS (default 1,4) cards with this tree (OUT/this) and with OTHER's
# (OUT/other; run from OTHER's folder, so that its sweep processes and their Ray actors import OTHER's cp_debug), each
# report compared with the in-process one (benchmarks/ray_scaling.py). The export cache is keyed by the code: OTHER's
# first sweep exports afresh (a second run of it is the one to compare).
set -u
out=${1:?OUT}; other=${2:?OTHER}; frames=${3:-1000}; cards=${4:-1,4}
source "$(dirname "$0")/gpu_ray_mps.sh"
ray_install
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import threadpoolctl" 2>/dev/null || echo "no threadpoolctl here: this tree's driver lane is off"
args=(--preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block --frames "$frames" --workers ""
      --time-limit "${TIME_LIMIT:-540}")
python3 benchmarks/ray_scaling.py "${args[@]}" --out "$out/this" --cards ""
mps_start
python3 benchmarks/ray_scaling.py "${args[@]}" --out "$out/this" --resume --no-in-process --cards "$cards"
mkdir -p "$out/other" && cp -r "$out/this/in_process" "$out/other/"  # the baseline each report is compared with
python3 - "$out/this/summary.json" "$out/other/summary.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["runs"] = {k: v for k, v in doc["runs"].items() if k == "in process"}
json.dump(doc, open(sys.argv[2], "w"))
PY
# from OTHER's folder: `python -m cp_debug.cli.main` puts the working folder first on sys.path, ahead of PYTHONPATH
root=$PWD; out=$(cd "$out" && pwd)
(cd "$other" && PYTHONPATH="$PWD:$PYTHONPATH" python3 "$root/benchmarks/ray_scaling.py" "${args[@]}" --out "$out/other" \
  --resume --no-in-process --cards "$cards")
mps_stop

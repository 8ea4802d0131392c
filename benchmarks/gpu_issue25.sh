#!/usr/bin/env bash
# Issue 25's GPU runs on one H100, each printing its figures (run from the repo root on the device machine, after
# `source benchmarks/gpu_setup.sh`). Usage: bash benchmarks/gpu_issue25.sh OUT [steps] [sweep frames]
#   steps: any of speed,convnext,fix,fixbisect,sweep,ray,half,profile (default: speed,convnext,fix,sweep); a fix written on the CPU machine is read from
#   .gpu_carry/. `ray` needs a host of 2 or 4 GPUs (nvidia-h200-x2/-x4) and the ray wheel staged like onnxruntime-gpu
#   (pip download ray==2.60.0 for cp312, split into parts, `cat` them back and add the wheel to the install).
set -u
out=${1:-/tmp/issue25}; steps=${2:-speed,convnext,fix,sweep}; frames=${3:-100}
mkdir -p "$out"; export PYTHONUNBUFFERED=1
cp="python3 -m cp_debug.cli.main"
timed() { local name=$1; shift; local t0; t0=$(date +%s.%N); "$@" > "$out/$name.log" 2>&1; local rc=$?
  echo "== $name: exit $rc, wall $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s"; tail -n "${TAILN:-30}" "$out/$name.log"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
git log --oneline -1 2>/dev/null || true
if [[ $steps == *speed* ]]; then  # 5: whole awml-base --level all bisects (targets: 15 s warm, 20 s fresh, 8 GB)
  TAILN=12 timed gpu_speed python3 benchmarks/gpu_speed.py --out "$out/speed"
fi
if [[ $steps == *convnext* ]]; then  # 3: ConvNeXt-PC in FP16 on CUDA (random weights), and the CPU emulation's error
  timed convnext_cuda $cp bisect --preset convnextpc-demo --random-weights --level all \
    --backends torch-cuda,torch-cuda-fp16,ort-cuda-fp16 --json "$out/convnext_cuda.json"
  TAILN=50 timed convnext_emulation python3 benchmarks/fp16_emulation_check.py --presets convnextpc-demo --level all \
    --out "$out/emulation"
fi
if [[ $steps == *fix* ]]; then  # 4: a CPU-written FP16 fix re-checked on CUDA; a fix searched with ort-cuda-fp16
  for d in .gpu_carry/fix_*; do [ -d "$d" ] && timed "check_$(basename "$d")" $cp fix --check "$d" --device cuda; done
  ckpt=.gpu_carry/local_demo.pth; [ -f "$ckpt" ] || ckpt=.gpu_carry/planted_demo.pth  # tests/fix/planted.py
  if [ -f "$ckpt" ]; then
    timed fix_cuda $cp fix --preset demo --checkpoint "$ckpt" --backends torch,ort-cuda-fp16 \
      --tol 0.05 --scenes 4 --verify-scenes 8 --out "$out/fix_cuda" --json "$out/fix_cuda.json"
    python3 - "$out/fix_cuda.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
v = d.get("verification") or {}
nodes = sum(len(x) for x in (d.get("set") or {}).get("onnx_nodes", {}).values())
print("fix_cuda:", d["status"], "; kept", nodes, "nodes in FP32; runs", d["search"]["runs"], "; latency cost ms",
      json.dumps(v.get("latency_cost_ms")), "; fixed", json.dumps((v.get("fixed") or {}).get("latency_ms")))
PY
  fi
fi
if [[ $steps == *fixbisect* ]] && [ -d .gpu_carry/fix_local_demo ]; then  # #23's acceptance bisect, on CUDA
  timed fix_bisect $cp bisect --preset demo --checkpoint .gpu_carry/local_demo.pth \
    --backends torch-cuda,ort-cuda@.gpu_carry/fix_local_demo,ort-cuda-fp16 --json "$out/fix_bisect.json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('within tolerance:', d['outputs_within_tolerance'], \
'first divergent:', d['first_divergent'])" "$out/fix_bisect.json"
fi
if [[ $steps == *half* ]]; then  # 4: the CPU's float16 emulation against CUDA's float16 on the same FP16 pairs
  fixes=(); for d in .gpu_carry/fix_*; do [ -d "$d" ] && fixes+=(--fix "$d"); done
  TAILN=40 timed half_demo python3 benchmarks/half_storage_check.py "${fixes[@]}" --preset demo --n 2
  TAILN=20 timed half_convnext python3 benchmarks/half_storage_check.py --preset convnextpc-demo --random-weights --n 2
fi
if [[ $steps == *profile* ]]; then  # 5: where an awml-base --level all bisect spends its time (warm, cProfile)
  $cp bisect --preset awml-base --level all --backends ort-cuda,ort-cuda-fp16 --quiet --json "$out/warmup.json" \
    > /dev/null 2>&1
  for pair in ort-cuda,ort-cuda-fp16 torch-cuda,ort-cuda-fp16; do
    t0=$(date +%s.%N)
    python3 -m cProfile -o "$out/prof_${pair%%,*}.out" -m cp_debug.cli.main bisect --preset awml-base --level all \
      --backends "$pair" --quiet --json "$out/prof_${pair%%,*}.json" > /dev/null 2>&1
    echo "== profile $pair: wall $(python3 -c "print(round($(date +%s.%N)-$t0,1))") s (under cProfile)"
    python3 -c "import pstats,sys; s=pstats.Stats(sys.argv[1]); s.sort_stats('cumulative').print_stats(45); \
s.sort_stats('tottime').print_stats(25)" "$out/prof_${pair%%,*}.out" | grep -v "^$" | cut -c1-160
  done
fi
if [[ $steps == *sweep* ]]; then  # 1: the sweep on one GPU (awml-base, held-out synthetic frames)
  timed sweep_awml $cp sweep --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block --bisect-top 3 \
    --n "$frames" --out "$out/sweep_awml" --no-html
  timed sweep_throughput python3 benchmarks/sweep_throughput.py --preset awml-base \
    --backends torch-cuda,ort-cuda-fp16 --frames 20 --memory-frames 10,60
fi
if [[ $steps == *ray* ]]; then  # 2: the same sweep on 1, 2 (and 4) GPUs of one host through a local Ray cluster
  n=$(nvidia-smi -L | wc -l)
  for w in 1 2 4; do
    [ "$w" -le "$n" ] || continue
    timed "ray_$w" $cp sweep --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block --bisect-top 0 \
      --n "$frames" --ray local --ray-workers "$w" --out "$out/ray_$w" --no-html
  done
  python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
docs = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("ray_*/sweep.json"))}
strip = lambda d: json.dumps({k: v for k, v in d.items() if k not in ("environment", "settings", "seconds")},
                             sort_keys=True)
base = next(iter(docs.values()), None)
for name, d in docs.items():
    print(name, "seconds", d.get("seconds"), "same sweep.json as ray_1:", strip(d) == strip(base))
PY
  # a worker killed mid-sweep: its shard is retried, every frame present once
  ( $cp sweep --preset awml-base --backends torch-cuda,ort-cuda-fp16 --level block --bisect-top 0 --n "$frames" \
      --ray local --ray-workers 2 --out "$out/ray_kill" --no-html > "$out/ray_kill.log" 2>&1 & )
  sleep 60; pkill -9 -f "ray::_ActorBody" -n && echo "killed one actor"; wait
  sleep 5; while pgrep -f "sweep --preset awml-base" >/dev/null; do sleep 5; done
  python3 -c "import json,sys; d=json.load(open('$out/ray_kill/sweep.json')); t=[f['token'] for f in d['frames']]; \
print('ray_kill frames', len(t), 'unique', len(set(t)))"
fi

#!/usr/bin/env bash
# GPU-machine runs of the lockstep (segment-by-segment) engine with ONNX Runtime's CUDA EP.
# Usage (device machine, repo root, onnxruntime-gpu on PYTHONPATH): bash benchmarks/gpu_lockstep.sh OUTDIR
set -u
out=$1; mkdir -p "$out"
export PYTHONUNBUFFERED=1
cp() { python3 -m cp_debug.cli.main "$@"; }
timed() { local name=$1; shift; local t0=$(date +%s.%N)
  cp bisect --json "$out/$name.json" --quiet "$@" > "$out/$name.txt" 2>&1
  local rc=$?; local t1=$(date +%s.%N)
  echo "== $name: exit $rc, wall $(python3 -c "print(round($t1-$t0,1))") s" | tee -a "$out/summary.txt"
  grep -E "root cause|first divergent|within tolerance|took|precision:|error" "$out/$name.txt" | grep -v "No registered" | head -12 >> "$out/summary.txt"; }
# 1. CenterPoint awml-base, both ONNX stages in lockstep on the GPU (stage level, refined)
timed awml_ortcuda_fp16 --preset awml-base --backends ort-cuda,ort-cuda-fp16
timed awml_ortcuda_tf32 --preset awml-base --backends ort-cuda,ort-cuda-tf32
# 2. every tensor of the backbone/neck/head ONNX (level all) vs two plain CUDA inferences
tmp=$(mktemp -d)
python3 benchmarks/bisect_scale.py --preset awml-base --prepare-into "$tmp" > "$tmp/paths.txt" 2>/dev/null
onnx=$(sed -n 1p "$tmp/paths.txt"); npz=$(sed -n 2p "$tmp/paths.txt")
(python3 - "$onnx" "$npz" <<'PY'
import sys, time, numpy as np, onnxruntime as ort
t0 = time.perf_counter()
feed = dict(np.load(sys.argv[2]))
for k in range(2):
    s = ort.InferenceSession(sys.argv[1], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    t1 = time.perf_counter(); s.run(None, feed); t2 = time.perf_counter(); s.run(None, feed)
    print(f"plain ort-cuda inference {k}: first run {t2 - t1:.3f} s, second {time.perf_counter() - t2:.3f} s")
print(f"== two plain ort-cuda sessions + runs (incl. load): {time.perf_counter() - t0:.1f} s")
PY
) | tee -a "$out/summary.txt"
timed level_all_ortcuda --onnx "$onnx" --inputs "$npz" --backends ort-cuda,ort-cuda --level all
timed level_all_ortcuda_fp16 --onnx "$onnx" --inputs "$npz" --backends ort-cuda,ort-cuda-fp16 --level all

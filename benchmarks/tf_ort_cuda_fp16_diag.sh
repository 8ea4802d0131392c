#!/usr/bin/env bash
# TransFusion-L's bisect on the ort-cuda-fp16 lane aborted in onnxruntime-gpu 1.31.1 ("terminate called without an
# active exception", inside run_with_iobinding). On the device, after `source benchmarks/gpu_setup.sh`: the bisect
# under faulthandler (the Python stacks of every thread at the abort), then the lanes one by one.
out=${OUT:-tf-diag}; mkdir -p "$out"
for lane in ort-cuda ort-cuda-fp16; do
  timeout 300 python3 -X faulthandler -m cp_debug.cli.main bisect --recipe transfusion --preset transfusion-tiny \
    --random-weights --backends torch-cuda,$lane --json "$out/$lane.json" -v > "$out/$lane.txt" 2>&1
  echo "$lane: exit $?"; grep -n -B2 -A40 "Fatal Python\|terminate called" "$out/$lane.txt" | head -80
done

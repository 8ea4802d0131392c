#!/usr/bin/env bash
# Issue 31's done-when on awml-base (random weights), on the GPU machine's CPUs (TensorRT is not there either):
# a pair with a planted FP16 overflow (tests/fix/planted.local_overflow_checkpoint: pts_neck.deblocks.0 peaks at 2e5),
# a kit written for it, the kit's polygraphy script run with ONNX Runtime in TensorRT's place (--onnxrt), and bisect
# reading trt-fp16@KIT beside ort-cpu-fp16@DIR on the same files. Each step timed; one step per call:
#   bash benchmarks/kit_awml.sh setup|kit|target|bisect  WORK
set -euo pipefail
step=$1 work=${2:-/tmp/kit_awml}
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
cp="python3 -m cp_debug.cli.main"
t() { /usr/bin/time -f "  $1: %e s wall, %M KB max RSS" "${@:2}"; }
case $step in
  setup)  # polygraphy and onnx-graphsurgeon from the staged wheels (the image has onnxruntime 1.30, CPU)
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/deps/*.whl
    mkdir -p "$work"
    t planted python3 -c "from tests.fix.planted import local_overflow_checkpoint as p; p('$work/planted.pth', preset='awml-base')"
    python3 -c "import numpy as np; from cp_debug.data.scenes import make_scene; from cp_debug.models.centerpoint.presets import get_preset; np.save('$work/scan.npy', make_scene(get_preset('awml-base'), 1_000_000).points.astype(np.float32))"
    t export $cp export --preset awml-base --checkpoint "$work/planted.pth" --out "$work/deploy" -q ;;
  kit)
    t trt-kit $cp trt-kit --preset awml-base --checkpoint "$work/planted.pth" --onnx-dir "$work/deploy" \
      --points "$work/scan.npy" --precision fp16 --out "$work/kit" --force -q
    du -sh "$work/kit" ;;
  target)
    t polygraphy-onnxrt bash "$work/kit/run_polygraphy.sh" fp16 --onnxrt
    du -sh "$work/kit/results" ;;
  bisect)
    set +e
    t bisect $cp bisect --preset awml-base --checkpoint "$work/planted.pth" --points "$work/kit/frames/frame_000.npy" \
      --backends "torch,trt-fp16@$work/kit,ort-cpu-fp16@$work/deploy" --no-noise-floor --json "$OUT/kit_awml.json" -q \
      > "$OUT/kit_awml.txt" 2>&1
    echo "bisect exit $?"; grep -E "first divergent|root cause|diverged|within|degraded" "$OUT/kit_awml.txt" | head -20 ;;
esac

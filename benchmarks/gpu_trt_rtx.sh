#!/usr/bin/env bash
# TensorRT for RTX on the GPU machine (issue 45): its builder on our graphs, its runtime's answer there.
#
# Staged on the CPU machine first (repo root; .whl/ and .gpu/ listed in .git/info/exclude):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl/deps \
#       tensorrt-rtx-cu13-bindings==1.7.1.116 polygraphy onnx-graphsurgeon
#   pip download --no-deps tensorrt-rtx-cu13-libs==1.7.1.116 -d /tmp/w && split -b 46M -d /tmp/w/*.whl .whl/trtrtx.part
#   a `cpdebug fix` folder whose set is not empty into .gpu/fix (fix.json and its two ONNX files):
#       cpdebug fix --backends torch,ort-cpu-fp16 --tol 0.008 --out /tmp/fix   (the demo keeps one conv in FP32)
# Then one device call per part (carry [".whl/trtrtx.partNN"], command `mkdir -p /tmp/stage && cp .whl/trtrtx.partNN
# /tmp/stage/`), and in the same warm machine: carry [".whl/deps", ".gpu"], command `bash benchmarks/gpu_trt_rtx.sh`.
# It writes into $OUT: gpu.txt, backends.txt, bisect.txt (+ bisect.json), facts.json, tests_gpu.txt, tests_rtx.txt.
set -uo pipefail
out=${OUT:-/tmp/trt-rtx-out}
mkdir -p "$out"
libs=/tmp/stage/tensorrt_rtx_cu13_libs-1.7.1.116-py3-none-manylinux_2_28_x86_64.whl
[ -f "$libs" ] || cat /tmp/stage/trtrtx.part* > "$libs"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$libs" .whl/deps/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 CPDEBUG_SERVER=off
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pycache NUMBA_CACHE_DIR=/tmp/numba_cache CPDEBUG_CACHE_DIR=/tmp/cpdebug-cache
nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv > "$out/gpu.txt" 2>&1
python3 -m cp_debug.cli.main backends > "$out/backends.txt" 2>&1
# the issue's command: both stages' engines built, then exit 3 with TensorRT-RTX's compute-capability line
{ time python3 -m cp_debug.cli.main bisect --preset awml-base --backends torch-cuda,trt-rtx-fp16 \
    --json "$out/bisect.json"; echo "exit $?"; } > "$out/bisect.txt" 2>&1
CPDEBUG_FIX_DIR=.gpu/fix CPDEBUG_TRT_RTX_FACTS="$out/facts.json" \
  python3 -m pytest -q -s -p no:cacheprovider -m gpu tests/backends/test_trt_rtx_gpu.py > "$out/tests_gpu.txt" 2>&1
echo "exit $?" >> "$out/tests_gpu.txt"
# the builder, the refusal, the names against the real cp312 module, the session on the fake engine, there
python3 -m pytest -q -p no:cacheprovider tests/backends/test_trt_rtx.py tests/backends/test_trt_names.py \
  tests/backends/test_trt_engine.py tests/backends/test_trt_and_availability.py > "$out/tests_rtx.txt" 2>&1
echo "exit $?" >> "$out/tests_rtx.txt"
tail -n 3 "$out"/*.txt

#!/usr/bin/env bash
# The suite's CPU part on the GPU machine's CPU (an Intel Xeon with AVX-512 VNNI and AMX: issue 53), where the
# numbers of ONNX Runtime's INT8 kernels and of float GEMMs come from other kernels than on an AVX2 machine.
# Stage the wheels the device lacks first (repo root, CPU machine):
#   bash ../shared/tools/stage-device-wheels.sh mmengine-lite addict yapf termcolor platformdirs nuscenes-devkit==1.2.0 \
#     pyquaternion cachetools junitparser rosbags lz4 ruamel.yaml ruamel.yaml.clib zstandard
# then one device call, carry [".whl/deps"]:   bash benchmarks/cpu_suite_device.sh [pytest args...]
# It writes into $OUT (or ./cpu-suite/): cpu.txt (model and flags), isa.txt/isa.json (benchmarks/int8_isa_check.py),
# demo-int8.json (the demo's `bisect --backends torch,ort-cpu-int8 --json`, to hold against an AMD machine's with
# benchmarks/json_diff.py), pytest.txt and junit.xml. Not installed there: ray, rerun-sdk, omegaconf, TensorRT-RTX,
# Model Explorer (their tests skip, naming the missing package).
set -uo pipefail
out=${OUT:-cpu-suite}; mkdir -p "$out"
workers=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/deps/*.whl || exit
# cp_debug's own metadata and entry point (`cpdebug`, `polygraphy` on PATH); the checkout comes first on the path
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit
export PYTHONPATH=$PWD:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pycache \
  NUMBA_CACHE_DIR=/tmp/numba_cache
export CUDA_VISIBLE_DEVICES=""  # the CPU part: no test may reach the GPU
unset PYTHONDONTWRITEBYTECODE
lscpu | grep -E "^(Model name|Flags|CPU\(s\))" | tee "$out/cpu.txt" | cut -c1-200
python3 benchmarks/int8_isa_check.py --json "$out/isa.json" 2>/dev/null | tee "$out/isa.txt"
python3 -m cp_debug.cli.main bisect --backends torch,ort-cpu-int8 --json "$out/demo-int8.json" > "$out/demo-int8.txt" 2>&1
echo "demo int8 bisect: exit $?"; tail -5 "$out/demo-int8.txt"
start=$(date +%s)
python3 -m pytest -q -n "$workers" --dist loadfile -m "not gpu and not trt" -p no:cacheprovider \
  --junitxml="$out/junit.xml" "$@" 2>&1 | tee "$out/pytest.txt" | tail -40
rc=${PIPESTATUS[0]}
echo "pytest exit $rc in $(( $(date +%s) - start )) s with $workers workers"
exit "$rc"

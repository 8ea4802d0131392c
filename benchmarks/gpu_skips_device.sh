#!/usr/bin/env bash
# The GPU tests on a GPU machine that lacks their optional prerequisites (issue 53): onnxruntime-gpu, nuscenes-devkit
# and TensorRT-RTX absent, torch CUDA present. Every test must pass or skip naming what is missing; none may fail.
# One device call, carry [".whl/deps"] (staged as for benchmarks/cpu_suite_device.sh):  bash benchmarks/gpu_skips_device.sh
set -uo pipefail
out=${OUT:-gpu-skips}; mkdir -p "$out"
site=/tmp/site-bare
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
  $(ls .whl/deps/*.whl | grep -v -e nuscenes -e tensorrt_rtx) || exit
export PYTHONPATH=$PWD:$site PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=/tmp/pycache NUMBA_CACHE_DIR=/tmp/numba_cache
unset PYTHONDONTWRITEBYTECODE
python3 -c "import onnxruntime as o, torch; print('ORT providers', o.get_available_providers(), 'CUDA', torch.cuda.is_available())"
python3 -m pytest -q -m gpu -rs -p no:cacheprovider 2>&1 | tee "$out/gpu-skips.txt" | tail -40
exit "${PIPESTATUS[0]}"

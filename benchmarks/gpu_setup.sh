#!/usr/bin/env bash
# On the GPU device machine: install what its image lacks, from wheels staged on the CPU machine.
# Stage them there first (repo root): bash ../shared/tools/stage-device-wheels.sh mmengine-lite addict yapf termcolor \
#   platformdirs nuscenes-devkit==1.2.0 pyquaternion cachetools jsonschema jsonschema-specifications referencing \
#   rpds-py attrs   (the `-m gpu` tests read reports against their schema; CHUNK=50M keeps one part + the tree,
#   tests/data and the weights moved aside, under 64 MiB)
# Then one device call per part:  carry [".whl/ort.partNN"], command: mkdir -p /tmp/stage && cp .whl/ort.partNN /tmp/stage/
# and finally, in the same warm machine, carry [".whl/deps"] and begin the command with:
#   source benchmarks/gpu_setup.sh && ...
# The image already has numba, pyarrow, onnxscript, scikit-learn, opencv and tqdm; onnxruntime 1.30 there is CPU-only,
# so onnxruntime-gpu goes into /tmp/site, which comes first on PYTHONPATH.
set -e
if [ ! -f /tmp/site/.cpdebug-ready ]; then
  whl=/tmp/stage/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
  [ -f "$whl" ] || cat /tmp/stage/ort.part* > "$whl"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$whl" .whl/deps/*.whl
  touch /tmp/site/.cpdebug-ready
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
# The image's site-packages are read-only and hold no bytecode for many modules, and each call gets a fresh working
# tree: without these, every process compiled ~1000 modules from source (3 s of an ort pair's bisect, 7 s of a
# torch pair's under cProfile) and numba recompiled its kernels: what no installed environment does twice.
# The image also sets PYTHONDONTWRITEBYTECODE=1, under which the prefix is never written: ~1,660 modules compiled in
# every process (5.9 s of a warm awml-base bisect under cProfile, issue 32).
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pycache NUMBA_CACHE_DIR=/tmp/numba_cache
python3 -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers(), o.get_available_providers()"
# a sweep's metrics over the set run nuscenes-devkit; without it their devkit entries hold its error, and a timing
# leaves out the devkit's part (docs/measurements.md, 2026-11-28 noon: staged wheels without it, found late)
python3 -c "import nuscenes.eval.detection.algo" 2>/dev/null || \
  echo "gpu_setup: nuscenes-devkit is not installed: stage it (the line above) or the sweeps' metrics skip the devkit" >&2
set +e

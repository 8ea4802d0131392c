#!/usr/bin/env bash
# Sourced by the GPU host's Ray benchmarks (gpu_ray_scaling.sh, gpu_mps.sh, gpu_cards.sh), after
# benchmarks/gpu_setup.sh: Ray from its staged parts, and an NVIDIA MPS control daemon of the caller's own.
#   ray_install   Ray 2.60.0 into gpu_setup.sh's /tmp/site from /tmp/stage/ray.part* (where `import ray` fails)
#   mps_start     the daemon, its pipe and log folders under /tmp/cpdebug-mps (exported for the sweeps it starts);
#                 the cards' compute mode is left as it is; returns 1 where the image has no nvidia-cuda-mps-control
#   mps_stop      the daemon told to quit
ray_install() {
  python3 -c "import ray" 2>/dev/null && return 0
  local whl=/tmp/stage/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
  [ -f "$whl" ] || cat /tmp/stage/ray.part* > "$whl"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$whl"
}

mps_start() {
  command -v nvidia-cuda-mps-control >/dev/null || { echo "no nvidia-cuda-mps-control on this image"; return 1; }
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/cpdebug-mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/cpdebug-mps/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d && echo "MPS daemon up"
}

mps_stop() {
  echo quit | nvidia-cuda-mps-control
}

#!/usr/bin/env bash
# Recreates the CPU environment that runs AWML's own TransFusion-L (tier4/AWML projects/TransFusion on
# mmdet3d 1.4.0 / mmdet 3.3.0 / mmcv 2.1.0 / mmengine 0.10.7, AWML's Dockerfile pins) for
# benchmarks/awml_transfusion_reference.py, the oracle that writes tests/data/transfusion/awml_reference_*.npz.
# Kept out of CI: it needs PyPI, a C++ compiler and ~3 GB of disk.
#
#   bash benchmarks/awml_env.sh                      # venv in /work/venv-awml, AWML source in /work/awml-full
#   VENV=/path AWML_SRC=/path MMCV_OPS=full bash benchmarks/awml_env.sh
#
# Pins and why:
#   torch 2.1.2   AWML's Dockerfile uses torch 2.8 + CUDA; mmcv 2.1.0 (Sept 2023) is built here against 2.1.2,
#                 which it was released against. PyPI's wheel is the cu121 one (it runs on CPU; its nvidia-* deps
#                 come with it); with download.pytorch.org reachable, TORCH_INDEX=https://download.pytorch.org/whl/cpu
#                 gives the 200 MB CPU-only wheel instead.
#   numpy<2       torch 2.1 is built against numpy 1.x (AWML's image pins numpy 1.23.5).
#   mmcv 2.1.0    from its PyPI sdist, with ops built for CPU (FORCE_CUDA=0). MMCV_OPS picks how many:
#                   full    (default) MMCV_WITH_OPS=1: all 77 C++ files of mmcv/ops/csrc (37 min at nice 19, MAX_JOBS=2
#                           on 2 shared cores);
#                   subset  mmcv's Python package (MMCV_WITH_OPS=0) plus an mmcv._ext built from mmcv's own sources
#                           for the ops TransFusion-L's inference touches: voxelization (hard/dynamic), nms,
#                           nms_rotated, info (8 files, ~10 min). Every other op name of mmcv's pybind.cpp is still
#                           defined (so `import mmcv.ops` and its ext_loader checks pass) but raises if called.
#                 Both were built here; the reference npz (tiny and real config) came out bit-identical with either.
#   mmdet 3.3.0, mmdet3d 1.4.0  --no-deps (their pins fight torch/numpy here), then the runtime deps they import.
#   AWML          `git archive` of the AWML mirror into AWML_SRC (its projects/ and autoware_ml/ go on sys.path;
#                 projects/TransFusion imports AWML's own projects/BEVFusion, not mmdet3d's).
set -euo pipefail
VENV=${VENV:-/work/venv-awml}
WORK=${WORK:-/tmp/awml-build}
MMCV_OPS=${MMCV_OPS:-full}
AWML_SRC=${AWML_SRC:-/work/awml-full}
AWML_MIRROR=${AWML_MIRROR:-/work/.mirror/tier4+AWML/repo}
JOBS=${MAX_JOBS:-2}
mkdir -p "$WORK"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
PY="$VENV/bin/python"
$PIP install -q --upgrade pip wheel "setuptools<70"

# 1. torch + numpy 1.x
if [ -n "${TORCH_INDEX:-}" ]; then
  $PIP install -q torch==2.1.2 --index-url "$TORCH_INDEX"
else
  $PIP install -q torch==2.1.2
fi
$PIP install -q "numpy<2"

# 2. mmengine (its opencv-python dep would pull numpy 2: use the headless 4.10 build instead)
$PIP install -q --no-deps mmengine==0.10.7
$PIP install -q "numpy<2" opencv-python-headless==4.10.0.84 addict pyyaml rich termcolor yapf matplotlib packaging ninja psutil

# 3. mmcv 2.1.0 from source (skipped when this venv already imports mmcv 2.1.0's ops; FORCE_MMCV=1 rebuilds)
cd "$WORK"
if [ -z "${FORCE_MMCV:-}" ] && "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  echo "mmcv 2.1.0 with ops already in $VENV"
else
[ -f mmcv-2.1.0.tar.gz ] || $PIP download -q --no-deps --no-build-isolation --no-binary :all: mmcv==2.1.0 -d .
rm -rf mmcv-2.1.0 && tar xzf mmcv-2.1.0.tar.gz && cd mmcv-2.1.0
if [ "$MMCV_OPS" = full ]; then
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=$JOBS nice -n 19 $PIP install -v --no-build-isolation --no-deps . > "$WORK/mmcv_build.log" 2>&1
else
  MMCV_WITH_OPS=0 $PIP install -q --no-build-isolation --no-deps .
  C=mmcv/ops/csrc/pytorch
  # pybind_subset.cpp: mmcv's pybind.cpp with the m.def of each op not compiled here replaced by a stub that raises
  "$PY" - "$C/pybind.cpp" "$C/pybind_subset.cpp" <<'EOF'
import re, sys
src = open(sys.argv[1]).read()
keep = {"hard_voxelize_forward", "dynamic_voxelize_forward", "nms", "nms_rotated",
        "get_compiler_version", "get_compiling_cuda_version"}
head, body = src.split("PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {", 1)
out, i = [], 0
while True:
    j = body.find("m.def(", i)
    if j < 0:
        break
    depth, k = 0, j + 5
    while True:
        depth += {"(": 1, ")": -1}.get(body[k], 0)
        k += 1
        if depth == 0:
            break
    k = body.index(";", k) + 1
    name = re.match(r'm\.def\(\s*"([^"]+)"', body[j:k]).group(1)
    out.append(body[j:k] if name in keep else
               f'm.def("{name}", [](py::args, py::kwargs) -> py::object {{ throw std::runtime_error('
               f'"mmcv op {name} is not in this subset build of mmcv._ext (benchmarks/awml_env.sh)"); }});')
    i = k
open(sys.argv[2], "w").write(head + "PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n  " + "\n  ".join(out) + "\n}\n")
print(f"pybind_subset.cpp: {sum(1 for o in out if 'subset build' not in o)} ops kept, "
      f"{sum(1 for o in out if 'subset build' in o)} stubbed")
EOF
  cat > setup_subset.py <<'EOF'
import os
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension
C = "mmcv/ops/csrc/pytorch"
srcs = ["pybind_subset.cpp", "info.cpp", "voxelization.cpp", "cpu/voxelization.cpp", "nms.cpp", "cpu/nms.cpp",
        "nms_rotated.cpp", "cpu/nms_rotated.cpp"]
setup(name="mmcv_ext_subset", ext_modules=[CppExtension(
    "mmcv._ext", [f"{C}/{s}" for s in srcs],
    include_dirs=[os.path.abspath("mmcv/ops/csrc/common"), os.path.abspath(C)],
    extra_compile_args={"cxx": ["-std=c++17"]})], cmdclass={"build_ext": BuildExtension})
EOF
  MAX_JOBS=$JOBS nice -n 19 "$PY" setup_subset.py build_ext --inplace > "$WORK/mmcv_build.log" 2>&1
  SITE=$(cd / && "$PY" -c "import mmcv, os; print(os.path.dirname(mmcv.__file__))")
  cp mmcv/_ext*.so "$SITE/"
fi
fi
cd "$WORK"
"$PY" -c "import mmcv, mmcv.ops; from mmcv.ops import Voxelization; print('mmcv', mmcv.__version__, 'ops ok')"

# 4. mmdet / mmdet3d (no deps: their pins fight the above), then what they import at run time
$PIP install -q --no-deps mmdet==3.3.0 mmdet3d==1.4.0
$PIP install -q "numpy<2" numba scipy shapely pycocotools terminaltables tqdm six trimesh plyfile networkx \
  pyquaternion prettytable
"$PY" -c "import mmdet, mmdet3d; print('mmdet', mmdet.__version__, 'mmdet3d', mmdet3d.__version__)"

# 5. AWML source (its projects/ import each other relatively; the repo root goes on sys.path)
if [ ! -d "$AWML_SRC/projects/TransFusion" ]; then
  mkdir -p "$AWML_SRC"
  git -C "$AWML_MIRROR" archive HEAD | tar -x -C "$AWML_SRC"
fi
echo "AWML $(git -C "$AWML_MIRROR" log -1 --format=%H) in $AWML_SRC"
"$PY" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"

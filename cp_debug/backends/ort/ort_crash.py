"""A session ONNX Runtime dies making, said instead of dying with it (a crash cannot be caught in the process).

ONNX Runtime 1.32's CPU optimiser at its default level (ORT_ENABLE_ALL) ends the process with a segmentation fault
on a float16 `Transpose` (perm 1, 0, 2) into a `MatMul` with a constant weight — BeatNet's LSTM into its output
Linear, as onnxconverter-common writes its FP16 file (tried as a new user). cp_debug's default CPU FP16 run emulates
float16 storage in a float32 graph and never makes that session; `CPDEBUG_ORT_CPU_HALF=native` runs ONNX Runtime's
own float16 kernels and died with it (exit 139, no message). There, each float16 graph a runner makes a session of
is first made in a child process at the same level; where the child dies by a signal, the lower levels
are tried there too and the run stops with the backend's fault (exit 3), saying which level loads it. Cost: a child
(about a second) per float16 graph, in that mode only.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import onnx

_CHILD = ("import sys, onnxruntime as ort\n"
          "so = ort.SessionOptions(); so.log_severity_level = 3\n"
          "so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, sys.argv[2])\n"
          "ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])\n")
LEVELS = ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC", "ORT_DISABLE_ALL")
_CHECKED: set[str] = set()  # the graphs (by digest) a child made a session of


def check(model: "onnx.ModelProto", providers: list, level: str | None, label: str) -> None:
    """Raise `BackendRuntimeError` where ONNX Runtime's CPU provider dies making a session of `model` (a float16
    graph, run natively) at `level` (None: its default); nothing otherwise (module docstring)."""
    from cp_debug.graph.onnx_files import INLINE_LIMIT, total_nbytes
    from cp_debug.precision.half_storage import holds_half_constants

    names = [p[0] if isinstance(p, tuple) else p for p in providers]
    from cp_debug.backends.ort.ort_precision import HALF_ENV

    native = os.environ.get(HALF_ENV, "").strip().lower() == "native"  # as `ort_runner.half_mode` reads it
    if names != ["CPUExecutionProvider"] or not native or total_nbytes(model) >= INLINE_LIMIT \
            or not holds_half_constants(model):
        return
    data = model.SerializeToString()
    digest = hashlib.sha256(data + str(level).encode()).hexdigest()
    if digest in _CHECKED:
        return
    level = level or LEVELS[0]
    with tempfile.TemporaryDirectory(prefix="cpdebug_crash_") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(data)
        code = _made(path, level)
        if code >= 0:
            _CHECKED.add(digest)
            return
        loads = next((lv for lv in LEVELS[LEVELS.index(level) + 1:] if level in LEVELS and _made(path, lv) >= 0),
                     None)
    import onnxruntime as ort

    from cp_debug.errors import BackendRuntimeError

    where = f"it loads at {loads}" if loads else "no lower level loads it either"
    raise BackendRuntimeError(
        f"{label}: ONNX Runtime {ort.__version__} dies (signal {-code}) making a CPU session of its float16 graph with "
        f"its own float16 kernels (CPDEBUG_ORT_CPU_HALF=native) at graph_optimization_level {level}; {where}. The "
        "file as written cannot be run so; the default (CPDEBUG_ORT_CPU_HALF unset) emulates its float16 storage")


def _made(path: Path, level: str) -> int:
    """The child's exit code making a session of `path` at `level` (negative: the signal that ended it)."""
    return subprocess.run([sys.executable, "-c", _CHILD, str(path), level], capture_output=True,
                          timeout=600).returncode

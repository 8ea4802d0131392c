"""A session ONNX Runtime dies making, said instead of dying with it (a crash cannot be caught in the process).

ONNX Runtime 1.32's CPU optimiser at its default level (ORT_ENABLE_ALL) ends the process with a segmentation fault
on a float16 `Transpose` (perm 1, 0, 2) into a `MatMul` with a constant weight — BeatNet's LSTM into its output
Linear, as onnxconverter-common writes its FP16 file (tried as a new user). cp_debug's default CPU FP16 run emulates
float16 storage in a float32 graph and never makes that session; `CPDEBUG_ORT_CPU_HALF=native` runs ONNX Runtime's
own float16 kernels and died with it (exit 139, no message). There, each float16 graph a runner makes a session of
is first made in a child process at the same level; where the child dies by a signal, the lower levels
are tried there too and the run stops with the backend's fault (exit 3), saying which level loads it. Cost: a child
(about a second) per float16 graph, in that mode only.

In the default mode a user's float16 file is never made a session of as written, so `file_crash` tries it once in a
child at ONNX Runtime's default level (cached per file: real path, size, mtime): a crash there is the deployment's,
said by `bisect/findings/runtime_fault.py` in the same words (`Crash.said`), the level that loads it as the cure.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
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
_FILES: dict[tuple[str, int, int], "Crash | None"] = {}  # a file's (real path, size, mtime) → `file_crash`'s answer


@dataclass(frozen=True)
class Crash:
    """ONNX Runtime dying (by `signal`) making a CPU session at `level`; `loads`: the first lower level that
    loads it (None: none does)."""

    version: str
    signal: int
    level: str
    loads: str | None

    def said(self, what: str) -> str:
        """`ONNX Runtime <version> dies (signal N) making a CPU session of <what> at graph_optimization_level
        <level>; it loads at <lower level>` — the one wording of both modes."""
        where = f"it loads at {self.loads}" if self.loads else "no lower level loads it either"
        return (f"ONNX Runtime {self.version} dies (signal {self.signal}) making a CPU session of {what} at "
                f"graph_optimization_level {self.level}; {where}")


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
        crash = _crashed(path, level, code)
    from cp_debug.errors import BackendRuntimeError

    raise BackendRuntimeError(
        f"{label}: " + crash.said("its float16 graph with its own float16 kernels (CPDEBUG_ORT_CPU_HALF=native)")
        + ". The file as written cannot be run so; the default (CPDEBUG_ORT_CPU_HALF unset) emulates its float16 "
        "storage")


def file_crash(path: str | Path) -> Crash | None:
    """Where ONNX Runtime's CPU provider dies making a session of the file at `path` as written (its path: the bytes
    on disk, external data beside them) at its default level (ORT_ENABLE_ALL), the `Crash`; None where it makes it
    (or stops with an error: the load check's, `ort_load.py`). One child per file (real path, size, mtime)."""
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
        if key not in _FILES:
            code = _made(Path(path), LEVELS[0])
            _FILES[key] = _crashed(Path(path), LEVELS[0], code) if code < 0 else None
    except (OSError, subprocess.SubprocessError):  # a file gone, a child that could not start or ran 10 minutes
        return None
    return _FILES[key]


def _crashed(path: Path, level: str, code: int) -> Crash:
    """The `Crash` of a child that died by signal `-code` at `level`, the lower levels tried in children."""
    import onnxruntime as ort

    loads = next((lv for lv in LEVELS[LEVELS.index(level) + 1:] if level in LEVELS and _made(path, lv) >= 0), None)
    return Crash(ort.__version__, -code, level, loads)


def _made(path: Path, level: str) -> int:
    """The child's exit code making a session of `path` at `level` (negative: the signal that ended it)."""
    return subprocess.run([sys.executable, "-c", _CHILD, str(path), level], capture_output=True,
                          timeout=600).returncode

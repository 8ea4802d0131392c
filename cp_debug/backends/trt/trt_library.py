"""The TensorRT library a `trt-*` or `trt-rtx-*` spec runs on, and what differs between the two, in one place.

`trt-*` takes TensorRT 10/11 (`import tensorrt`, PyPI's `tensorrt` downloads its libraries from NVIDIA's index);
`trt-rtx-*` takes TensorRT for RTX (`import tensorrt_rtx`, NVIDIA's SDK wheel, or `tensorrt_rtx_bindings`, PyPI's
`tensorrt-rtx-cu13-bindings` over `tensorrt-rtx-cu13-libs`). Their Python APIs are TensorRT's, so one builder
(`trt_build.py`) and one engine session (`trt_engine.py`) serve both. What differs:
  * typing: TensorRT-RTX and TensorRT >= 11 are strongly typed only (precision comes from the ONNX); TensorRT 10
    creates a strongly typed network on request (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`);
  * debug tensors of every unfused tensor: TensorRT >= 10.12 and every TensorRT-RTX;
  * building: TensorRT-RTX builds ahead of time on the CPU alone, for compute capabilities 8.0, 8.6, 8.9 and
    12.x by default; its engine runs only there (an H100, sm_90, is refused when the engine loads), with a runtime
    cache of the kernels it compiles just in time.
The decisions that follow from these facts are pure and live in `trt_plan.py` (`strongly_typed_only`,
`has_debug_tensors`); this module imports the library and holds the logger both need.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

from cp_debug.backends.trt.trt_plan import RTX_HINT, TRT_HINT, has_debug_tensors, parse_version, strongly_typed_only
from cp_debug.errors import BackendUnavailableError

RTX_RUNS_ON = "compute capability 8.0, 8.6, 8.9 and 12.x (RTX 30/40/50, RTX PRO, A100)"
NAMES = {"trt": "TensorRT", "trt-rtx": "TensorRT-RTX"}


@dataclass(frozen=True)
class TensorRtLibrary:
    """One imported TensorRT: `module` is its bindings (`tensorrt`, `tensorrt_rtx` or `tensorrt_rtx_bindings`)."""

    framework: str  # trt | trt-rtx
    module: Any
    version_text: str

    @property
    def name(self) -> str:
        return NAMES[self.framework]

    @property
    def rtx(self) -> bool:
        return self.framework == "trt-rtx"

    @property
    def version(self) -> tuple[int, int]:
        return parse_version(self.version_text)

    @property
    def strongly_typed_only(self) -> bool:
        return strongly_typed_only(self.framework, self.version)

    @property
    def debug_tensors(self) -> bool:
        return has_debug_tensors(self.framework, self.version)

    def network_flags(self, strongly_typed: bool) -> int:
        """`Builder.create_network`'s flags: STRONGLY_TYPED where the library types weakly unless asked (TensorRT
        10); 0 where every network is strongly typed (TensorRT >= 11, TensorRT-RTX: the flag is a no-op there)."""
        if not strongly_typed or self.strongly_typed_only:
            return 0
        return 1 << int(self.module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)

    def logger(self) -> "CapturedLog":
        return CapturedLog(self.module)


def load_library(framework: str) -> TensorRtLibrary:
    """The TensorRT of `framework` (trt | trt-rtx), imported once; BackendUnavailableError saying what to install."""
    return _load(framework)


@functools.lru_cache(maxsize=None)
def _load(framework: str) -> TensorRtLibrary:
    if framework == "trt-rtx":
        module = _import_first(("tensorrt_rtx", "tensorrt_rtx_bindings"), RTX_HINT)
        lib = TensorRtLibrary("trt-rtx", module, str(module.__version__))
        if lib.version[0] < 1:
            raise BackendUnavailableError(f"TensorRT-RTX {module.__version__} found; {RTX_HINT}")
        return lib
    if framework != "trt":
        raise ValueError(f"no TensorRT library for framework {framework!r}")
    module = _import_first(("tensorrt",), TRT_HINT)
    lib = TensorRtLibrary("trt", module, str(module.__version__))
    if lib.version[0] < 10:
        raise BackendUnavailableError(f"TensorRT {module.__version__} found; {TRT_HINT}")
    return lib


def _import_first(names: tuple[str, ...], hint: str):
    """The first of `names` installed (`imports.optional`: a broken install — a library it links missing — says its
    own error, not the hint)."""
    from cp_debug.imports import optional

    return optional(names, hint)


class CapturedLog:
    """A TensorRT logger that keeps what the library says instead of printing it: errors become the one line a
    failed build or load reports, warnings go to the runner's settings (the report, not the terminal)."""

    def __init__(self, trt):
        self.lines: list[tuple[str, str]] = []  # (severity, message)
        self._lock = threading.Lock()
        log = self

        class _Logger(trt.ILogger):  # the bindings' own base class: TensorRT calls `log` from its threads
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                log.add(str(severity).rsplit(".", 1)[-1], str(msg))

        self.trt_logger = _Logger()

    def add(self, severity: str, message: str) -> None:
        if severity in ("VERBOSE", "INFO"):
            return
        with self._lock:
            self.lines.append((severity, message.strip()))

    def errors(self) -> list[str]:
        return [m for s, m in self.lines if s in ("ERROR", "INTERNAL_ERROR")]

    def warnings(self) -> list[str]:
        return [m for s, m in self.lines if s == "WARNING"]

    def error_line(self, default: str) -> str:
        """What the library said went wrong, in one line: its error naming a compute capability where there is one
        (a GPU it does not run on), else its first 'Error Code N: …' (the failing call's own, before the errors that
        follow from it), else its last error; `default` where it said none."""
        errors = [" ".join(e.split()) for e in self.errors()]
        if not errors:
            return default
        pick = next((e for e in errors if "compute capability" in e.lower()), None) \
            or next((e for e in errors if "Error Code" in e), errors[-1])
        at = pick.find("Error Code")
        return pick[at:] if at >= 0 else pick

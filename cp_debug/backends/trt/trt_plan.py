"""How a `trt-*` / `trt-rtx-*` engine is built on a given TensorRT: pure decisions, unit-tested without TensorRT.

Precision lives where the TensorRT version puts it:
  * TensorRT ≥ 11 and TensorRT for RTX are strongly typed only (the FP16/INT8/BF16 builder flags, per-layer
    precision, calibrators and the algorithm selector are gone): the ONNX carries the precision (our FP16
    conversion, our Q/DQ, or the file's own), and no builder precision flag is passed.
  * TensorRT 10: strongly typed where the ONNX carries its precision (a deployed FP16 or Q/DQ file, our Q/DQ, our
    FP16 conversion when nodes are kept in FP32); an FP32 file run as trt-fp16/bf16 takes the builder flag, as a
    TensorRT 10 deployment of that file with `fp16` does.
Probes: TensorRT ≥ 10.12 and TensorRT for RTX read them as debug tensors (`mark_unfused_tensors_as_debug_tensors`):
every tensor that survives fusion is read and the engine is the deployed one. Below 10.12 they are marked as network
outputs, an explicit fallback the report states (marking changes TensorRT's fusion).
The engine and timing caches are keyed here (`cache_key`), by the ONNX's hash, TensorRT's version and the settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from cp_debug.backends.spec import BackendSpec
from cp_debug.errors import BackendUnavailableError, BadInputError

TRT_HINT = ("trt-* needs TensorRT 10+: pip install 'cp-debug[trt]' on a machine with an NVIDIA GPU "
            "(PyPI's tensorrt downloads from NVIDIA's index)")
RTX_HINT = ("trt-rtx-* needs TensorRT for RTX 1.x: pip install 'cp-debug[trt-rtx]' (PyPI's tensorrt-rtx-cu13-libs and "
            "tensorrt-rtx-cu13-bindings; -cu12- for CUDA 12). It builds on any machine; its engines run on compute "
            "capability 8.0, 8.6, 8.9 and 12.x (RTX 30/40/50, RTX PRO, A100)")
DEBUG_TENSORS_SINCE = (10, 12)  # INetworkDefinition.mark_unfused_tensors_as_debug_tensors (TensorRT-RTX: every 1.x)
OUTPUTS_NOTE = "probes marked as outputs: TensorRT's fusion differs from the deployed engine"
ENGINE_SUFFIXES = (".engine", ".plan")
PROBE_MODES = ("none", "debug", "outputs", "engine")  # engine: a prebuilt engine's own outputs and debug tensors


@dataclass(frozen=True)
class BuildPlan:
    """What to do for one trt-* spec on one TensorRT version.

    onnx_transform: none | fp16 | int8_qdq, applied before parsing. strongly_typed: the network is created
    STRONGLY_TYPED. flags: builder precision flags (TensorRT 10 only: fp16 / bf16). tf32: the TF32 flag.
    probes: how probe tensors are read (`PROBE_MODES`). prebuilt: a user's engine file is run, nothing is built.
    notes: what the report says about this plan (a fallback, a file run as it is).
    """

    onnx_transform: str
    strongly_typed: bool
    flags: tuple[str, ...] = ()
    tf32: bool = False
    probes: str = "none"
    prebuilt: bool = False
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"onnx_transform": self.onnx_transform, "strongly_typed": self.strongly_typed,
                "flags": list(self.flags), "tf32": self.tf32, "probes": self.probes, "prebuilt": self.prebuilt,
                "notes": list(self.notes)}


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT version string ("10.12.0.36" → (10, 12)); (0, 0) where unreadable."""
    parts = str(text).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except ValueError:
        return 0, 0


def strongly_typed_only(framework: str, version: tuple[int, int]) -> bool:
    """Every network the library builds is strongly typed: TensorRT ≥ 11, TensorRT for RTX."""
    return framework == "trt-rtx" or version[0] >= 11


def has_debug_tensors(framework: str, version: tuple[int, int]) -> bool:
    """The library marks every unfused tensor as a debug tensor: TensorRT ≥ 10.12, TensorRT for RTX."""
    return framework == "trt-rtx" or tuple(version) >= DEBUG_TENSORS_SINCE


def plan_build(spec: BackendSpec, version: tuple[int, int], *, keep_fp32: bool = False, held: str = "fp32",
               probes: bool = False) -> BuildPlan:
    """Pure decision: how to build `spec` on `version` ((major, minor)) of its library (TensorRT for trt-*,
    TensorRT for RTX for trt-rtx-*). Raises BackendUnavailableError where it cannot be done.

    keep_fp32: ONNX nodes are to stay in FP32 (our FP16 conversion keeps them; a builder flag would ignore the
    list). held: the precision the source ONNX carries itself (`precision.held.file_precision`). probes: tensors
    beyond the graph's outputs are to be read.
    """
    if not spec.is_tensorrt:
        raise BadInputError(f"plan_build is for trt-* and trt-rtx-* specs, not {spec}")
    fw = spec.framework
    major = version[0]
    if fw == "trt" and major < 10:
        raise BackendUnavailableError(f"TensorRT {'.'.join(map(str, version))} is too old: {TRT_HINT}")
    if fw == "trt-rtx" and major < 1:
        raise BackendUnavailableError(f"TensorRT-RTX {'.'.join(map(str, version))} is too old: {RTX_HINT}")
    typed_only = strongly_typed_only(fw, version)
    p = spec.precision
    notes = [f"the ONNX carries {held}: run as it is, strongly typed"] if held != "fp32" and p in (
        "fp32", "tf32", held) else []
    if p == "bf16":
        if typed_only or keep_fp32 or held != "fp32":
            why = ("keeping nodes in FP32 needs the ONNX to carry BF16" if not typed_only and held == "fp32"
                   else f"TensorRT {major} takes BF16 from the ONNX graph only")
            raise BackendUnavailableError(f"{spec}: {why}, and cp_debug does not write BF16 ONNX graphs yet: use "
                                          "trt-fp16, or TensorRT 10's builder flag on an FP32 file")
        return BuildPlan("none", False, ("bf16",), False, _probe_mode(fw, version, probes),
                         notes=_notes(fw, version, probes))
    transform = {"fp32": "none", "tf32": "none", "fp16": "fp16", "int8": "int8_qdq"}[p]
    if held == p or (held in ("int8", "int4w") and p != "fp16"):
        transform = "none"  # the file carries the precision asked (or Q/DQ, 4-bit weight DQ too: run as they are)
    flagged = not typed_only and held == "fp32" and p == "fp16" and not keep_fp32
    if flagged:
        return BuildPlan("none", False, ("fp16",), False, _probe_mode(fw, version, probes),
                         notes=_notes(fw, version, probes))
    carries = held != "fp32" or transform != "none"
    strongly = typed_only or carries
    return BuildPlan(transform, strongly, (), p == "tf32", _probe_mode(fw, version, probes),
                     notes=tuple(notes) + _notes(fw, version, probes))


def plan_prebuilt(spec: BackendSpec, engine: Path) -> BuildPlan:
    """A user's own engine: nothing is built or transformed; its probes are what it exposes (outputs, and debug
    tensors where it was built with them)."""
    if not spec.is_tensorrt:
        raise BadInputError(f"a prebuilt engine runs on trt-* and trt-rtx-* specs, not {spec}")
    return BuildPlan("none", False, probes="engine", prebuilt=True, notes=(
        f"prebuilt engine {engine.name}: run as built, nothing rebuilt; {spec.precision} is the label, the engine's "
        "own precision is what ran; probes are its outputs and the debug tensors it was built with",))


def builder_flags(plan: BuildPlan, framework: str, version: tuple[int, int]) -> dict[str, bool]:
    """The builder flags for `plan`, by `BuilderFlag` name → set (True) or cleared (False): TF32 always said
    (set for trt-tf32, else cleared: TensorRT 10 turns it on by default); FP16/BF16 on TensorRT 10's weakly typed
    networks only. No calibrator, algorithm selector or precision constraints, ever."""
    flags = {"TF32": plan.tf32}
    if not strongly_typed_only(framework, version) and not plan.strongly_typed:
        flags.update({flag.upper(): True for flag in plan.flags})
    elif plan.flags:
        raise ValueError(f"builder flags {plan.flags} on a strongly typed build ({framework} {version})")
    return flags


def _probe_mode(framework: str, version: tuple[int, int], probes: bool) -> str:
    if not probes:
        return "none"
    return "debug" if has_debug_tensors(framework, version) else "outputs"


def _notes(framework: str, version: tuple[int, int], probes: bool) -> tuple[str, ...]:
    return (OUTPUTS_NOTE,) if _probe_mode(framework, version, probes) == "outputs" else ()


def prebuilt_engine(onnx_dir: Path | None, stage: str) -> Path | None:
    """`DIR/<stage>.engine` or `DIR/<stage>.plan` (the user's own engine beside the stage's ONNX), or None."""
    if onnx_dir is None:
        return None
    found = [onnx_dir / f"{stage}{suffix}" for suffix in ENGINE_SUFFIXES if (onnx_dir / f"{stage}{suffix}").is_file()]
    if len(found) > 1:
        raise BadInputError(f"{onnx_dir} holds both {found[0].name} and {found[1].name}: keep one engine per stage")
    return found[0] if found else None


def cache_key(onnx_sha256: str, trt_version: str, settings: Mapping) -> str:
    """The cache key of an engine (or a timing or runtime cache): the ONNX's hash, the library's name and full
    version (`"TensorRT-RTX 1.7.1.116"`) and the build settings (JSON, sorted keys). Any change is another key."""
    text = json.dumps({"onnx": onnx_sha256, "tensorrt": str(trt_version), "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    """`tensorrt` in cp_debug's cache folder (`files.user_cache_dir()`: `$CPDEBUG_CACHE_DIR`, else
    `$XDG_CACHE_HOME/cp_debug`, else `~/.cache/cp_debug`)."""
    from cp_debug.files import user_cache_dir

    return user_cache_dir() / "tensorrt"

"""One builder for both TensorRTs: an ONNX graph → a serialized engine, by the same calls on TensorRT 10/11 and on
TensorRT for RTX (`trt_library.py` holds what differs, `trt_plan.py` decides).

In order: the ONNX parser (a node it cannot take is named with its op, in one line); the network, strongly typed
where the plan says; the probes — every unfused tensor marked as a debug tensor (the engine as deployed: marking
changes no fusion), or, below TensorRT 10.12, the probe tensors marked as outputs (the plan's stated fallback);
the config — TF32 cleared unless the spec asks for it, FP16/BF16 builder flags on TensorRT 10's weakly typed
networks only, the workspace, DETAILED profiling (the engine inspector's layer precisions), one optimization
profile over every dynamic input; then `build_serialized_network`. TensorRT-RTX builds ahead of time without a GPU
(its default targets: compute capability 8.0, 8.6, 8.9, 12.x); a timing cache would make it look for one, so only
TensorRT 10/11 builds keep one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from cp_debug.backends.trt.trt_plan import BuildPlan, builder_flags
from cp_debug.backends.trt.trt_profile import Profile
from cp_debug.errors import BackendRuntimeError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.backends.trt.trt_library import TensorRtLibrary


@dataclass(frozen=True)
class BuildFacts:
    """What one build did: the library, the network's layers, the probes found as its tensors and how they are
    read (debug: every unfused tensor a debug tensor; outputs: marked as outputs), the targets, seconds, bytes,
    and what the library warned about."""

    library: str
    layers: int
    probes_in_network: int
    probes_requested: int
    probes_read_as: str  # debug | outputs | none
    targets: tuple[str, ...]
    seconds: float
    engine_bytes: int
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {"library": self.library, "layers": self.layers, "probes_in_network": self.probes_in_network,
                "probes_requested": self.probes_requested, "probes_read_as": self.probes_read_as,
                "targets": list(self.targets), "seconds": round(self.seconds, 3), "engine_bytes": self.engine_bytes,
                "warnings": list(self.warnings)}


def build_engine(lib: "TensorRtLibrary", model_bytes: bytes, plan: BuildPlan, profile: Profile | None, *,
                 probes: Sequence[str] = (), marked: Sequence[str] = (), workspace: int | None = None,
                 timing_cache: bytes | None = None, what: str = "the model") -> tuple[bytes, BuildFacts, bytes | None]:
    """(engine, facts, timing cache) for the ONNX `model_bytes` (already prepared: precision transform applied).

    probes: the tensors the caller will read (counted in the parsed network); marked: those to mark as outputs
    (plan.probes == "outputs"). A parse or build failure is a BackendRuntimeError quoting the library."""
    trt = lib.module
    log = lib.logger()
    t0 = time.perf_counter()
    builder = trt.Builder(log.trt_logger)
    network = builder.create_network(lib.network_flags(plan.strongly_typed))
    parser = trt.OnnxParser(network, log.trt_logger)
    if not parser.parse(model_bytes):
        raise BackendRuntimeError(_parse_error(lib, parser, log, what))
    tensors = _network_tensors(network)
    if plan.probes == "debug":  # the plan asks for them only where the library has them (TensorRT >= 10.12, RTX)
        network.mark_unfused_tensors_as_debug_tensors()
    for name in marked:
        tensor = tensors.get(name)
        if tensor is not None and not tensor.is_network_output:
            network.mark_output(tensor)
    config = builder.create_builder_config()
    for flag, on in builder_flags(plan, lib.framework, lib.version).items():
        (config.set_flag if on else config.clear_flag)(getattr(trt.BuilderFlag, flag))
    if workspace:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if profile:
        trt_profile = builder.create_optimization_profile()
        for name, r in profile.items():
            trt_profile.set_shape(name, tuple(r.min), tuple(r.opt), tuple(r.max))
        config.add_optimization_profile(trt_profile)
    cache = None
    if not lib.rtx:  # TensorRT-RTX: a timing cache makes the ahead-of-time build look for a GPU
        cache = config.create_timing_cache(timing_cache or b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise BackendRuntimeError(f"{lib.name} {lib.version_text} cannot build an engine for {what}: "
                                  f"{log.error_line('the build failed and the library said nothing')}")
    engine = bytes(data)
    facts = BuildFacts(f"{lib.name} {lib.version_text}", network.num_layers,
                       sum(1 for p in probes if p in tensors), len(probes), plan.probes, _targets(lib, config),
                       time.perf_counter() - t0, len(engine), tuple(dict.fromkeys(log.warnings())))
    return engine, facts, (bytes(cache.serialize()) if cache is not None else None)


def _network_tensors(network) -> dict:
    """Name → tensor of the parsed network: its inputs and every layer's outputs."""
    found = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        found[tensor.name] = tensor
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_outputs):
            tensor = layer.get_output(j)
            found[tensor.name] = tensor
    return found


def _targets(lib: "TensorRtLibrary", config) -> tuple[str, ...]:
    """The compute capabilities a TensorRT-RTX build targets (its defaults where none was set); () for TensorRT,
    which builds for the GPU it runs on."""
    if lib.rtx:
        n = int(config.num_compute_capabilities)
        if n == 0:
            return ("default: 8.0, 8.6, 8.9, 12.x",)
        return tuple(str(config.get_compute_capability(i)).rsplit(".", 1)[-1] for i in range(n))
    return ()


def _parse_error(lib: "TensorRtLibrary", parser, log, what: str) -> str:
    """The parser's first error in one line: the node by name and op, then the library's words."""
    if parser.num_errors == 0:
        return f"{lib.name} {lib.version_text} cannot parse {what}: {log.error_line('no reason given')}"
    err = parser.get_error(0)
    node = err.node_name() or f"#{err.node()}"
    op = err.node_operator() or "?"
    desc = " ".join(str(err.desc()).split())
    more = f" (and {parser.num_errors - 1} more)" if parser.num_errors > 1 else ""
    return f"{lib.name} {lib.version_text} cannot parse {what}: node {node} ({op}): {desc}{more}"

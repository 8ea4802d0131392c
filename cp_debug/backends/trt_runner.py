"""TensorRT runner, thin, over Polygraphy's TensorRT loaders and runner (`polygraphy.backend.trt`).

NOT RUN AGAINST A REAL TENSORRT HERE: it was written on a machine without TensorRT or a GPU. Its pure decision
logic (`plan_build`) is unit-tested; the build/infer path follows Polygraphy's documented API and must be
checked on a GPU machine (tests marked `trt`).

Precision, by TensorRT version:
  * TensorRT 10: the ONNX graph is parsed as is (INT8: with our Q/DQ) into a weakly typed network and the
    builder flags pick precisions (fp16 / bf16 / int8; TF32 only for trt-tf32).
  * TensorRT ≥ 11: the FP16/INT8 builder flags are gone; precision comes from the ONNX graph (our FP16
    conversion, our Q/DQ) and the network is built strongly typed.
The graph is prepared as ONNX Runtime's is (`graph_loader.PrepareGraph`: precision transform, probe tensors exposed
as outputs, probes an INT8 graph lost reported missing); the probe tensors are then marked as network outputs
(ModifyNetworkOutputs) by their ONNX tensor names. Marking changes TensorRT's layer fusion.
A failed engine build or inference is a BackendRuntimeError with TensorRT's own message; a feed that does not fit
the engine's inputs is bad input, checked before TensorRT sees it (`feed.check_feed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from cp_debug.backends.base import PrecisionReport, Runner
from cp_debug.backends.feed import check_feed
from cp_debug.backends.graph_loader import PreparedGraph, PrepareGraph, vanished_note
from cp_debug.backends.spec import CAPABILITIES, BackendSpec
from cp_debug.determinism import Determinism
from cp_debug.errors import BackendRuntimeError, BackendUnavailableError, BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

TRT_HINT = ("trt-* needs TensorRT 10+: pip install 'cp-debug[trt]' on a machine with an NVIDIA GPU "
            "(PyPI's tensorrt downloads from NVIDIA's index)")


@dataclass(frozen=True)
class BuildPlan:
    """How to build one trt-* spec: the ONNX transform to apply first, network typing, builder flags, TF32."""

    onnx_transform: str  # none | fp16 | int8_qdq
    strongly_typed: bool
    flags: tuple[str, ...]  # builder precision flags: fp16 / bf16 / int8 (TensorRT 10 only)
    tf32: bool


def plan_build(spec: BackendSpec, trt_major: int, keep_fp32: bool = False) -> BuildPlan:
    """Pure decision: what to do for `spec` on TensorRT `trt_major`. Raises BackendUnavailableError when impossible.

    keep_fp32: ONNX nodes are to stay in FP32. That works where FP16 comes from the ONNX graph (TensorRT ≥ 11);
    TensorRT 10's FP16 builder flag would ignore the list silently, so that combination is refused.
    """
    if spec.framework != "trt":
        raise BadInputError(f"plan_build is for trt-* specs, not {spec}")
    if trt_major < 10:
        raise BackendUnavailableError(f"TensorRT {trt_major} is too old: {TRT_HINT}")
    p = spec.precision
    tf32 = p == "tf32"
    if trt_major == 10 and keep_fp32 and p in ("fp16", "bf16"):
        raise BackendUnavailableError(
            f"{spec} on TensorRT 10 takes {p.upper()} from a builder flag, which would ignore the keep-FP32 node "
            "list (cp_debug sets no per-layer precision constraints): keeping nodes in FP32 needs TensorRT 11+, "
            "where precision comes from the ONNX graph; or use ort-cuda-fp16"
        )
    if trt_major == 10:
        if p in ("fp32", "tf32"):
            return BuildPlan("none", False, (), tf32)
        if p == "int8":  # explicit quantization: Q/DQ in the graph, INT8 flag to let the builder use it
            return BuildPlan("int8_qdq", False, ("int8",), False)
        return BuildPlan("none", False, (p,), False)  # fp16 / bf16 through builder flags
    if p in ("fp32", "tf32"):
        return BuildPlan("none", True, (), tf32)
    if p == "fp16":
        return BuildPlan("fp16", True, (), False)
    if p == "int8":
        return BuildPlan("int8_qdq", True, (), False)
    raise BackendUnavailableError(
        f"{spec} on TensorRT {trt_major} needs a BF16 ONNX graph, which cp_debug does not write yet: "
        "use trt-fp16, or TensorRT 10 (builder flag)"
    )


def import_tensorrt():
    """The `tensorrt` module and its major version, or BackendUnavailableError with what to install."""
    try:
        import tensorrt as trt
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install (missing libnvinfer)
        raise BackendUnavailableError(TRT_HINT) from err
    try:
        major = int(str(trt.__version__).split(".")[0])
    except ValueError:
        major = 0
    if major < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} found; {TRT_HINT}")
    return trt, major


class TrtRunner(Runner):
    """Builds a TensorRT engine from an ONNX model (the `trt-*` specs). Same constructor shape as OrtRunner.

    The graph is prepared by `graph_loader(plan)` (`graph_loader.PrepareGraph`, shared with ONNX Runtime: the same
    transforms, probe outputs and missing probes); this class builds the engine and runs it.
    workspace: builder memory pool limit in bytes (None: TensorRT's default).
    """

    capabilities = CAPABILITIES["trt"]  # keep_fp32_nodes= (TensorRT 11+: precision from the ONNX graph)

    def __init__(self, model: "onnx.ModelProto | str | Path", spec: BackendSpec, *,
                 extra_outputs: Iterable[str] = (), calib_feeds: Sequence[dict[str, np.ndarray]] | None = None,
                 keep_fp32_nodes: Iterable[str] = (), exclude_int8_nodes: Iterable[str] = (),
                 determinism: Determinism = Determinism(), workspace: int | None = None, calib_method: str = "minmax"):
        if spec.framework != "trt":
            raise BadInputError(f"TrtRunner runs trt-* specs, not {spec}")
        super().__init__(str(spec))
        self.spec = spec
        self._model_src = model
        self.extra_outputs = tuple(dict.fromkeys(extra_outputs))
        self.calib_feeds = calib_feeds
        self.keep_fp32_nodes = tuple(keep_fp32_nodes)
        self.exclude_int8_nodes = tuple(exclude_int8_nodes)
        self.determinism = determinism
        self.workspace = workspace
        self.calib_method = calib_method
        self._runner = None
        self._plan: BuildPlan | None = None
        self._trt_version: str | None = None
        self._graph: PreparedGraph | None = None
        self._layer_precisions: dict[str, int] | None = None

    def graph_loader(self, plan: BuildPlan) -> PrepareGraph:
        """The loader that prepares this runner's graph for `plan` (its ONNX transform), the probes exposed."""
        return PrepareGraph(self._model_src, str(self.spec), plan.onnx_transform, extra_outputs=self.extra_outputs,
                            calib_feeds=self.calib_feeds, keep_fp32_nodes=self.keep_fp32_nodes,
                            exclude_int8_nodes=self.exclude_int8_nodes, calib_method=self.calib_method)

    def _activate(self) -> None:
        trt, major = import_tensorrt()
        from polygraphy.backend.trt import TrtRunner as PolyTrtRunner

        self._trt_version = trt.__version__
        plan = plan_build(self.spec, major, keep_fp32=bool(self.keep_fp32_nodes))
        self._plan = plan
        self._graph = self.graph_loader(plan)()
        if self._graph.model.ByteSize() > 1_800_000_000:
            raise BackendUnavailableError(f"{self.spec}: models over 2 GB are not supported by this runner yet")
        engine = self._build(trt, major, plan)
        self._layer_precisions = _layer_precisions(trt, engine)
        self._runner = PolyTrtRunner(engine, name=str(self.spec))
        self._runner.activate()

    def _build(self, trt, major: int, plan: BuildPlan):
        """The engine of the prepared graph, its probe tensors marked as outputs; a failed build is TensorRT's own
        message (BackendRuntimeError)."""
        from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, ModifyNetworkOutputs, NetworkFromOnnxBytes
        from polygraphy.exception import PolygraphyException

        graph = self._graph
        network = NetworkFromOnnxBytes(graph.model.SerializeToString(), strongly_typed=plan.strongly_typed or None)
        network = ModifyNetworkOutputs(network, outputs=list(dict.fromkeys(graph.out_map.values())))
        config_kwargs = {"tf32": plan.tf32, "profiling_verbosity": trt.ProfilingVerbosity.DETAILED}
        if major < 11:
            config_kwargs.update({"fp16": "fp16" in plan.flags or None, "bf16": "bf16" in plan.flags or None,
                                  "int8": "int8" in plan.flags or None})
        if self.workspace:
            config_kwargs["memory_pool_limits"] = {trt.MemoryPoolType.WORKSPACE: int(self.workspace)}
        try:
            return EngineFromNetwork(network, config=CreateConfig(**config_kwargs))()
        except PolygraphyException as err:
            raise BackendRuntimeError(f"TensorRT cannot build an engine for {self.spec}: {_first_line(err)}") from err

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from polygraphy.exception import PolygraphyException

        meta = self._runner.get_input_metadata()
        ready = check_feed(feed, {name: (_np_dtype(m.dtype), list(m.shape)) for name, m in meta.items()},
                           "the engine")
        try:
            raw = self._runner.infer(ready)
        except PolygraphyException as err:  # the feed was checked above: this is TensorRT failing, not the input
            raise BackendRuntimeError(f"TensorRT failed running {self.spec}: {_first_line(err)}") from err
        out = {}
        for original, name in self._graph.out_map.items():
            arr = np.array(raw[name], copy=True)  # polygraphy reuses its host buffers between calls
            out[original] = arr.astype(np.float32, copy=False) if np.issubdtype(arr.dtype, np.floating) else arr
        return out

    def _deactivate(self) -> None:
        if self._runner is not None:
            self._runner.deactivate()
        self._runner = None

    @property
    def missing_outputs(self) -> list[str]:
        return list(self._graph.missing) if self._graph is not None else []

    def quant_amax(self) -> dict[str, float]:
        quantized = self._graph.quantized if self._graph is not None else None
        return dict(quantized.activation_amax) if quantized is not None else {}

    def settings(self) -> dict:
        plan = self._plan
        return {
            "backend": str(self.spec),
            "tensorrt": self._trt_version,
            "build_plan": None if plan is None else {
                "onnx_transform": plan.onnx_transform, "strongly_typed": plan.strongly_typed,
                "flags": list(plan.flags), "tf32": plan.tf32},
            "workspace": self.workspace,
            "precision_transform": None if self._graph is None else self._graph.transform.to_json(),
            "extra_outputs": len(self.extra_outputs),
            "missing_outputs": self.missing_outputs,
        }

    def precision_report(self) -> PrecisionReport | None:
        if self._plan is None:  # never activated
            return None
        req = self.spec.precision
        lost = (vanished_note(self.missing_outputs),) if req == "int8" and self.missing_outputs else ()
        lp = self._layer_precisions
        if not lp:
            return PrecisionReport(req, "unknown",
                                   ("engine layer precisions not available from the engine inspector", *lost))
        want = {"fp32": "Float", "tf32": "Float", "fp16": "Half", "bf16": "BFloat16", "int8": "Int8"}[req]
        total = sum(lp.values())
        n = lp.get(want, 0)
        effective = req if n == total else ("mixed" if n else "fp32")
        notes = (f"{n} of {total} engine layers output {want}; others: "
                 + ", ".join(f"{v} {k}" for k, v in lp.items() if k != want),) if n != total else ()
        return PrecisionReport(req, effective, notes + lost)


def _np_dtype(dtype) -> np.dtype | None:
    """A numpy dtype for an engine input's dtype (polygraphy's metadata), None where numpy has none."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return None


def _first_line(err: BaseException) -> str:
    text = [line for line in str(err).strip().splitlines() if line.strip()]
    return text[0][:300] if text else type(err).__name__


_FORMAT_KEYS = (("Int8", ("int8",)), ("BFloat16", ("bf16", "bfloat16")), ("Half", ("fp16", "half")),
                ("Float", ("fp32", "float")))


def _layer_precisions(trt, engine) -> dict[str, int] | None:
    """Count engine layers by the data type of their first output (engine inspector, DETAILED verbosity)."""
    import json

    try:
        inspector = engine.create_engine_inspector()
        info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception:  # noqa: BLE001
        return None
    counts: dict[str, int] = {}
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict) or not layer.get("Outputs"):
            continue
        fmt = str(layer["Outputs"][0].get("Format/Datatype", "")).lower()  # e.g. "Row major linear FP16 format"
        kind = next((k for k, keys in _FORMAT_KEYS if any(key in fmt for key in keys)), None)
        if kind is None:
            continue
        counts[kind] = counts.get(kind, 0) + 1
    return counts or None

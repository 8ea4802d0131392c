"""TensorRT runner, thin, over Polygraphy's TensorRT loaders and runner (`polygraphy.backend.trt`).

NOT RUN AGAINST A REAL TENSORRT HERE: it was written on a machine without TensorRT or a GPU. Its decisions
(`trt_plan.plan_build`: which API per TensorRT version, debug tensors or marked outputs) are unit-tested, and every
TensorRT name it and its polygraphy calls use is checked against the TensorRT 10 and 11 bindings' own name lists
(`tests/backends/test_trt_names.py`); the build and inference must be checked on a GPU machine (tests marked `trt`).

What it does, in order (`trt_plan` says why):
  * The graph is prepared as ONNX Runtime's is (`graph_loader.PrepareGraph`: the precision transform the plan asks
    for, the probes looked up, probes an INT8 graph lost reported missing).
  * Probes on TensorRT ≥ 10.12: the network is parsed with `mark_unfused_tensors_as_debug_tensors` and the graph
    is left as deployed; polygraphy's runner collects the debug tensors and `infer` returns them beside the
    outputs. A probe TensorRT fused away is not in them: it is reported missing ("fused: not observable in this
    engine"). Below 10.12 the probes are marked as network outputs (`ModifyNetworkOutputs`), a fallback the
    settings and the precision report state (marking changes TensorRT's fusion).
  * Optimization profiles cover every dynamic axis: `profile=` (`trt_profile.profile_from_shapes` over the frames
    to be run, widened by the deployment's caps); none given and the graph has dynamic axes: the engine is built
    at the first `infer`, from that feed's shapes widened by `profile_caps=`. A later feed outside the profile is
    one BadInputError line.
  * `engine_file=`: the user's own `.engine` / `.plan` is deserialized with the TensorRT runtime, nothing is built;
    its probes are what it exposes (outputs, and debug tensors if it was built with them).
  * Built engines and timing caches are kept in `cache_dir` (default `trt_plan.default_cache_dir()`), keyed by the
    prepared ONNX's hash, TensorRT's version, the GPU and the build settings; files written whole.
A failed engine build or inference is a BackendRuntimeError with TensorRT's own message (exit 3); a feed that does
not fit the engine's inputs is bad input, checked before TensorRT sees it (`feed.check_feed`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from cp_debug.backends.base import PrecisionReport, Runner
from cp_debug.backends.feed import check_feed
from cp_debug.backends.graph_loader import PreparedGraph, PrepareGraph, vanished_note
from cp_debug.backends.spec import CAPABILITIES, BackendSpec
from cp_debug.backends.trt_dumps_layer_info import FUSED
from cp_debug.backends.trt_plan import (TRT_HINT, BuildPlan, cache_key, config_kwargs, default_cache_dir,
                                        parse_version, plan_build, plan_prebuilt)
from cp_debug.backends.trt_profile import Profile, ShapeRange, check_within, profile_from_shapes
from cp_debug.determinism import Determinism
from cp_debug.errors import BackendRuntimeError, BackendUnavailableError, BadInputError, first_line

if TYPE_CHECKING:  # pragma: no cover
    import onnx


def import_tensorrt():
    """The `tensorrt` module and its (major, minor) version, or BackendUnavailableError with what to install."""
    try:
        import tensorrt as trt
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install (missing libnvinfer)
        raise BackendUnavailableError(TRT_HINT) from err
    version = parse_version(trt.__version__)
    if version[0] < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} found; {TRT_HINT}")
    return trt, version


class TrtRunner(Runner):
    """Builds (or loads) a TensorRT engine for an ONNX model (the `trt-*` specs). Same constructor shape as
    OrtRunner; constructing does nothing.

    workspace: builder memory pool limit in bytes (None: TensorRT's default). profile / profile_caps: the
    optimization profile, or the caps ({input: {axis: size}}) widening the one built from the first feed.
    engine_file: a prebuilt engine to run instead of building. cache_dir: where engines and timing caches are kept
    (None: the user's cache dir); cache=False builds every time and keeps nothing.
    """

    capabilities = CAPABILITIES["trt"]

    def __init__(self, model: "onnx.ModelProto | str | Path", spec: BackendSpec, *,  # noqa: PLR0913
                 extra_outputs: Iterable[str] = (), calib_feeds: Sequence[dict[str, np.ndarray]] | None = None,
                 keep_fp32_nodes: Iterable[str] = (), exclude_int8_nodes: Iterable[str] = (),
                 determinism: Determinism = Determinism(), workspace: int | None = None, calib_method: str = "minmax",
                 profile: Profile | None = None, profile_caps: Mapping[str, Mapping[int, int]] | None = None,
                 engine_file: str | Path | None = None, cache_dir: str | Path | None = None, cache: bool = True):
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
        self.profile = dict(profile) if profile else None
        self.profile_caps = {k: dict(v) for k, v in (profile_caps or {}).items()}
        self.engine_file = Path(engine_file) if engine_file is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache = cache
        self._runner = None
        self._trt = None
        self._plan: BuildPlan | None = None
        self._trt_version: str | None = None
        self._graph: PreparedGraph | None = None
        self._layer_precisions: dict[str, int] | None = None
        self._fused: tuple[str, ...] = ()
        self._cache_note: str | None = None

    def graph_loader(self, plan: BuildPlan, source=None) -> PrepareGraph:
        """The loader that prepares this runner's graph for `plan`: its ONNX transform, the probes looked up, and
        exposed as outputs only where the plan marks them (`probes == "outputs"`)."""
        return PrepareGraph(self._model_src if source is None else source, str(self.spec), plan.onnx_transform,
                            extra_outputs=self.extra_outputs, calib_feeds=self.calib_feeds,
                            keep_fp32_nodes=self.keep_fp32_nodes, exclude_int8_nodes=self.exclude_int8_nodes,
                            calib_method=self.calib_method, check=source is None,
                            expose=plan.probes == "outputs")

    def _activate(self) -> None:
        from cp_debug.graph.model import load_onnx
        from cp_debug.precision.held import file_precision

        trt, version = import_tensorrt()
        self._trt, self._trt_version = trt, str(trt.__version__)
        source = load_onnx(self._model_src)
        if self.engine_file is not None:
            plan = plan_prebuilt(self.spec, self.engine_file)
        else:
            outputs = {o.name for o in source.graph.output}
            plan = plan_build(self.spec, version, keep_fp32=bool(self.keep_fp32_nodes), held=file_precision(source),
                              probes=any(n not in outputs for n in self.extra_outputs))
        self._plan = plan
        self._graph = self.graph_loader(plan, source)()
        if self._graph.model.ByteSize() > 1_800_000_000:
            raise BackendUnavailableError(f"{self.spec}: models over 2 GB are not supported by this runner yet")
        if plan.prebuilt or self.profile is not None or not _dynamic_inputs(self._graph.model):
            self._start(self._build(trt, version, plan))
        # else: built at the first infer, from its shapes (`profile_caps` widening them)

    def _start(self, engine) -> None:
        from polygraphy.backend.trt import TrtRunner as PolyTrtRunner

        self._layer_precisions = _layer_precisions(self._trt, engine)
        if self._plan.prebuilt:
            self.profile = _engine_profile(self._trt, engine)
        self._runner = PolyTrtRunner(engine, name=str(self.spec))
        self._runner.activate()

    def _build(self, trt, version: tuple[int, int], plan: BuildPlan):
        """The engine: the user's file, a cached one, or one built now (cached after). A failed build or load is
        TensorRT's own message (BackendRuntimeError)."""
        from polygraphy.backend.trt import EngineFromBytes
        from polygraphy.exception import PolygraphyException

        try:
            if plan.prebuilt:
                return EngineFromBytes(_read(self.engine_file))()
            return EngineFromBytes(self._engine_bytes(trt, version, plan))()
        except PolygraphyException as err:
            what = "load the engine" if plan.prebuilt else "build an engine"
            raise BackendRuntimeError(f"TensorRT cannot {what} for {self.spec}: {first_line(err)}") from err

    def _engine_bytes(self, trt, version: tuple[int, int], plan: BuildPlan) -> bytes:
        import io

        from polygraphy.backend.trt import (CreateConfig, EngineBytesFromNetwork, ModifyNetworkOutputs,
                                            NetworkFromOnnxBytes)
        from polygraphy.backend.trt import Profile as PolyProfile

        from cp_debug.files import write_bytes_atomic

        graph = self._graph
        model_bytes = graph.model.SerializeToString()
        marked = sorted(set(graph.out_map.values()) - set(graph.graph_outputs)) if plan.probes == "outputs" else []
        settings = {"plan": plan.to_json(), "marked": marked, "workspace": self.workspace, "gpu": _gpu_name(),
                    "profile": {k: r.to_json() for k, r in (self.profile or {}).items()}}
        onnx_sha = hashlib.sha256(model_bytes).hexdigest()
        folder = (self.cache_dir or default_cache_dir()) if self.cache else None
        engine_path = folder / f"{cache_key(onnx_sha, self._trt_version, settings)}.engine" if folder else None
        timing_path = folder / f"{cache_key(onnx_sha, self._trt_version, _timing_settings(settings))}.timing" \
            if folder else None
        if engine_path is not None and engine_path.is_file():
            self._cache_note = f"engine from the cache: {engine_path}"
            return _read(engine_path)
        network = NetworkFromOnnxBytes(model_bytes, strongly_typed=plan.strongly_typed or None,
                                       mark_unfused_tensors_as_debug_tensors=(plan.probes == "debug") or None)
        if marked:
            network = ModifyNetworkOutputs(network, outputs=list(dict.fromkeys(graph.out_map.values())))
        profiles = []
        if self.profile:
            poly = PolyProfile()
            for name, r in self.profile.items():
                poly.add(name, min=list(r.min), opt=list(r.opt), max=list(r.max))
            profiles = [poly]
        kwargs = dict(config_kwargs(plan, version), profiles=profiles,
                      profiling_verbosity=trt.ProfilingVerbosity.DETAILED)
        if self.workspace:
            kwargs["memory_pool_limits"] = {trt.MemoryPoolType.WORKSPACE: int(self.workspace)}
        if timing_path is not None and timing_path.is_file():
            kwargs["load_timing_cache"] = io.BytesIO(_read(timing_path))
        timing = io.BytesIO()
        data = bytes(EngineBytesFromNetwork(network, config=CreateConfig(**kwargs),
                                            save_timing_cache=timing if folder else None)())
        if engine_path is not None:
            write_bytes_atomic(engine_path, data, parents=True)
            if timing.getvalue():
                write_bytes_atomic(timing_path, timing.getvalue(), parents=True)
            self._cache_note = f"engine built and cached: {engine_path}"
        return data

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from polygraphy.exception import PolygraphyException

        if self._runner is None:  # dynamic axes and no profile given: this feed's shapes, widened by the caps
            ready = check_feed(feed, _graph_inputs(self._graph.model), "the model")
            self.profile = _first_feed_profile({k: v.shape for k, v in ready.items()}, self.profile_caps)
            self._start(self._build(self._trt, parse_version(self._trt_version), self._plan))
        meta = self._runner.get_input_metadata()
        ready = check_feed(feed, {name: (_np_dtype(m.dtype), list(m.shape)) for name, m in meta.items()},
                           "the engine")
        if self.profile:
            check_within(self.profile, {k: v.shape for k, v in ready.items()})
        try:
            raw = self._runner.infer(ready)
        except PolygraphyException as err:  # the feed was checked above: this is TensorRT failing, not the input
            raise BackendRuntimeError(f"TensorRT failed running {self.spec}: {first_line(err)}") from err
        out, fused = {}, []
        for original, name in self._graph.out_map.items():
            if name not in raw:
                fused.append(original)
                continue
            arr = np.array(raw[name], copy=True)  # polygraphy reuses its host buffers between calls
            out[original] = arr.astype(np.float32, copy=False) if np.issubdtype(arr.dtype, np.floating) else arr
        self._fused = tuple(fused)
        return out

    def _deactivate(self) -> None:
        if self._runner is not None:
            self._runner.deactivate()
        self._runner = None

    @property
    def missing_outputs(self) -> list[str]:
        """Probes the prepared graph lacks (INT8), then probes the engine did not hand back (fused away)."""
        lost = list(self._graph.missing) if self._graph is not None else []
        return lost + [n for n in self._fused if n not in lost]

    def quant_amax(self) -> dict[str, float]:
        quantized = self._graph.quantized if self._graph is not None else None
        return dict(quantized.activation_amax) if quantized is not None else {}

    def settings(self) -> dict:
        plan = self._plan
        return {
            "backend": str(self.spec),
            "tensorrt": self._trt_version,
            "build_plan": None if plan is None else plan.to_json(),
            "engine_file": None if self.engine_file is None else str(self.engine_file),
            "profile": None if not self.profile else {k: r.to_json() for k, r in self.profile.items()},
            "cache": self._cache_note,
            "workspace": self.workspace,
            "precision_transform": None if self._graph is None else self._graph.transform.to_json(),
            "extra_outputs": len(self.extra_outputs),
            "missing_outputs": self.missing_outputs,
            "fused": list(self._fused),
        }

    def precision_report(self) -> PrecisionReport | None:
        if self._plan is None:  # never activated
            return None
        req = self.spec.precision
        lost = (vanished_note(self._graph.missing),) if req == "int8" and self._graph.missing else ()
        if self._fused:
            lost += (f"{len(self._fused)} probe(s) {FUSED}: {', '.join(self._fused[:3])}"
                     f"{' …' if len(self._fused) > 3 else ''}",)
        lost = tuple(self._plan.notes) + lost
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


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise BadInputError(f"cannot read {path}: {err.strerror or err}") from err


def _timing_settings(settings: dict) -> dict:
    """A timing cache serves every build of one prepared graph with one typing and precision, on one GPU, whatever
    its probes and profile: keyed by those alone."""
    plan = settings["plan"]
    return {"strongly_typed": plan["strongly_typed"], "flags": plan["flags"], "tf32": plan["tf32"],
            "gpu": settings["gpu"]}


def _gpu_name() -> str | None:
    """This machine's GPU (engines are built for one), as the environment records it."""
    from cp_debug.determinism import environment

    return environment().get("gpu")


def _first_feed_profile(shapes: Mapping[str, Sequence[int]], caps: Mapping[str, Mapping[int, int]]) -> Profile:
    """The profile of an engine built at its first feed: that feed's shapes; an axis the deployment caps runs
    from 1 to its cap (every later frame fits, as on the car), the others stay as fed."""
    prof = profile_from_shapes([shapes], caps)
    for name, axes in caps.items():
        if name in prof:
            r = prof[name]
            lo = tuple(1 if a in axes else d for a, d in enumerate(r.min))
            prof[name] = ShapeRange(lo, r.opt, r.max)
    return prof


def _dynamic_inputs(model) -> bool:
    return any(not d.HasField("dim_value") for i in model.graph.input for d in i.type.tensor_type.shape.dim)


def _graph_inputs(model) -> dict[str, tuple[np.dtype | None, list]]:
    """The graph's inputs as `check_feed` takes them: dtype and dims (-1 where dynamic)."""
    from onnx import helper

    out = {}
    for i in model.graph.input:
        t = i.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type))
        except (KeyError, TypeError, ValueError):
            dtype = None
        out[i.name] = (dtype, [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim])
    return out


def _engine_profile(trt, engine) -> Profile:
    """A prebuilt engine's optimization profile 0, per input (what it can run)."""
    prof: Profile = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
            continue
        lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
        prof[name] = ShapeRange(tuple(lo), tuple(opt), tuple(hi))
    return prof


def _np_dtype(dtype) -> np.dtype | None:
    """A numpy dtype for an engine input's dtype (polygraphy's metadata), None where numpy has none."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return None



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

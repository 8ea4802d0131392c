"""TensorRT runner for `trt-*` (TensorRT 10/11) and `trt-rtx-*` (TensorRT for RTX): one runner, one builder
(`trt_build.py`), one engine session (`trt_engine.py`); the library and what differs between the two in
`trt_library.py`, the decisions in `trt_plan.py`.

What ran where: TensorRT-RTX's builder has built cp_debug's graphs for real (on the CPU machine, which needs no GPU
to build, and on an H100); no TensorRT runtime has ever run one of its engines here (TensorRT 10/11 cannot be
installed; TensorRT-RTX's runtime refuses the H100, compute capability 9.0). The inference path is tested against a
fake engine only.

What it does, in order (`trt_plan` says why):
  * The graph is prepared as ONNX Runtime's is (`graph_loader.PrepareGraph`: the precision transform the plan asks
    for, the probes looked up, probes an INT8 graph lost reported missing).
  * Probes on TensorRT ≥ 10.12 and TensorRT-RTX: every unfused tensor is marked a debug tensor and the graph is
    left as deployed; the engine session's listener collects them beside the outputs. A probe TensorRT fused away
    is not among them: it is reported missing ("fused: not observable in this engine"). Below 10.12 the probes are
    marked as network outputs, a fallback the settings and the precision report state (marking changes fusion).
  * Optimization profiles cover every dynamic axis: `profile=` (`trt_profile.profile_from_shapes` over the frames
    to be run, widened by the deployment's caps); none given and the graph has dynamic axes: the engine is built
    at the first `infer`, from that feed's shapes widened by `profile_caps=`. A later feed outside the profile is
    one BadInputError line.
  * `engine_file=`: the user's own `.engine` / `.plan` is deserialized, nothing is built; its probes are what it
    exposes (outputs, and debug tensors if it was built with them).
  * Built engines (and TensorRT's timing cache, TensorRT-RTX's runtime cache) are kept in `cache_dir` (default
    `trt_plan.default_cache_dir()`), keyed by the prepared ONNX's hash, the library and its version, the GPU (for
    TensorRT; TensorRT-RTX's engines are portable) and the build settings; files written whole.
  * An engine the library builds but will not run here (TensorRT-RTX on an unsupported GPU, no GPU at all) is
    `EngineRefusedError` (exit 3) with the library's own line, raised after the build; `build()` builds (or finds
    in the cache) without running, so the caller can check every stage's graph first.
A failed parse or build is a BackendRuntimeError naming the node and op, or quoting the library (exit 3); a feed that
does not fit the engine's inputs is bad input, checked before TensorRT sees it (`feed.check_feed`).
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
from cp_debug.backends.trt.trt_dumps_layer_info import FUSED
from cp_debug.backends.trt.trt_plan import BuildPlan, cache_key, default_cache_dir, plan_build, plan_prebuilt
from cp_debug.backends.trt.trt_profile import Profile, ShapeRange, check_within, profile_from_shapes
from cp_debug.determinism import Determinism
from cp_debug.errors import BackendUnavailableError, BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from cp_debug.backends.trt.trt_build import BuildFacts
    from cp_debug.backends.trt.trt_engine import EngineSession
    from cp_debug.backends.trt.trt_library import TensorRtLibrary


class TrtRunner(Runner):
    """Builds (or loads) a TensorRT engine for an ONNX model (the `trt-*` and `trt-rtx-*` specs). Same constructor
    shape as OrtRunner; constructing does nothing.

    workspace: builder memory pool limit in bytes (None: the library's default). profile / profile_caps: the
    optimization profile, or the caps ({input: {axis: size}}) widening the one built from the first feed.
    engine_file: a prebuilt engine to run instead of building. cache_dir: where engines and caches are kept
    (None: the user's cache dir); cache=False builds every time and keeps nothing. stage: the stage's name, for
    the messages (else the file's name).
    """

    def __init__(self, model: "onnx.ModelProto | str | Path", spec: BackendSpec, *,  # noqa: PLR0913
                 extra_outputs: Iterable[str] = (), calib_feeds: Sequence[dict[str, np.ndarray]] | None = None,
                 keep_fp32_nodes: Iterable[str] = (), exclude_int8_nodes: Iterable[str] = (),
                 determinism: Determinism = Determinism(), workspace: int | None = None, calib_method: str = "minmax",
                 profile: Profile | None = None, profile_caps: Mapping[str, Mapping[int, int]] | None = None,
                 engine_file: str | Path | None = None, cache_dir: str | Path | None = None, cache: bool = True,
                 stage: str | None = None):
        if not spec.is_tensorrt:
            raise BadInputError(f"TrtRunner runs trt-* and trt-rtx-* specs, not {spec}")
        super().__init__(str(spec))
        self.capabilities = CAPABILITIES[spec.framework]
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
        self.stage = stage
        self._lib: TensorRtLibrary | None = None
        self._plan: BuildPlan | None = None
        self._graph: PreparedGraph | None = None
        self._session: EngineSession | None = None
        self._engine: bytes | None = None
        self._built: BuildFacts | None = None
        self._layer_precisions: dict[str, int] | None = None
        self._fused: tuple[str, ...] = ()
        self._skipped: dict[str, str] = {}
        self._cache_note: str | None = None
        self._runtime_cache: Path | None = None

    def graph_loader(self, plan: BuildPlan, source=None) -> PrepareGraph:
        """The loader that prepares this runner's graph for `plan`: its ONNX transform, the probes looked up, and
        exposed as outputs only where the plan marks them (`probes == "outputs"`)."""
        return PrepareGraph(self._model_src if source is None else source, str(self.spec), plan.onnx_transform,
                            extra_outputs=self.extra_outputs, calib_feeds=self.calib_feeds,
                            keep_fp32_nodes=self.keep_fp32_nodes, exclude_int8_nodes=self.exclude_int8_nodes,
                            calib_method=self.calib_method, check=source is None,
                            expose=plan.probes == "outputs")

    # -- building ------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """The library imported, the plan made and the graph prepared (no engine yet); once."""
        if self._graph is not None:
            return
        from cp_debug.backends.trt.trt_library import load_library
        from cp_debug.graph.model import load_onnx
        from cp_debug.precision.held import file_precision

        lib = self._lib = load_library(self.spec.framework)
        source = load_onnx(self._model_src)
        if self.engine_file is not None:
            plan = plan_prebuilt(self.spec, self.engine_file)
        else:
            outputs = {o.name for o in source.graph.output}
            plan = plan_build(self.spec, lib.version, keep_fp32=bool(self.keep_fp32_nodes),
                              held=file_precision(source), probes=any(n not in outputs for n in self.extra_outputs))
        self._plan = plan
        self._graph = self.graph_loader(plan, source)()
        from cp_debug.graph.onnx_files import encoded

        if encoded(self._graph.model) is None:  # past 2 GiB (inline, or its weights in the weights folder)
            raise BackendUnavailableError(f"{self.spec}: models over 2 GB are not supported by this runner yet")

    def build(self, feed: Mapping[str, np.ndarray] | None = None) -> "BuildFacts | None":
        """Build this runner's engine (or take it from the cache) without running it: the graph parses and builds,
        or a one-line BackendRuntimeError. `feed` gives the profile of a graph with dynamic axes where none was
        given. Returns the build's facts (None for a prebuilt engine or one found in the cache)."""
        self.prepare()
        if self._engine is None:
            if self.profile is None and _dynamic_inputs(self._graph.model):
                if feed is None:
                    raise BadInputError(f"{self.spec}: the graph has dynamic axes: give a profile or a feed to build")
                ready = check_feed(dict(feed), _graph_inputs(self._graph.model), "the model")
                self.profile = _first_feed_profile({k: v.shape for k, v in ready.items()}, self.profile_caps)
            self._engine = self._engine_bytes()
        return self._built

    def _activate(self) -> None:
        self.prepare()
        if self._plan.prebuilt or self.profile is not None or not _dynamic_inputs(self._graph.model):
            self._start()
        # else: built at the first infer, from its shapes (`profile_caps` widening them)

    def _start(self) -> None:
        """The engine built (or read) and opened: EngineRefusedError where the library will not run it here."""
        from cp_debug.backends.trt.trt_engine import EngineRefusedError, EngineSession

        if self._engine is None:
            self._engine = _read(self.engine_file) if self._plan.prebuilt else self._engine_bytes()
        session = EngineSession(self._lib, self._engine, what=f"{self.spec} ({self._what()})",
                                debug=self._plan.probes in ("debug", "engine") and self._lib.debug_tensors,
                                runtime_cache=self._runtime_cache)
        try:
            self._session = session.open()
        except EngineRefusedError as refused:
            refused.built = self._built  # what the build just did (None: the engine came from the cache or the user)
            raise
        self._layer_precisions = _layer_precisions(self._lib.module, session.engine)
        if self._plan.prebuilt:
            self.profile = _engine_profile(self._lib.module, session.engine)

    def _what(self) -> str:
        if self.stage:
            return self.stage
        src = self._model_src
        return Path(src).name if isinstance(src, (str, Path)) else (getattr(src.graph, "name", "") or "the model")

    def _engine_bytes(self) -> bytes:
        from cp_debug.backends.trt.trt_build import build_engine
        from cp_debug.files import write_bytes_atomic

        lib, graph, plan = self._lib, self._graph, self._plan
        model_bytes = graph.model.SerializeToString()
        marked = sorted(set(graph.out_map.values()) - set(graph.graph_outputs)) if plan.probes == "outputs" else []
        settings = {"plan": plan.to_json(), "marked": marked, "workspace": self.workspace,
                    "gpu": None if lib.rtx else _gpu_name(),  # TensorRT-RTX engines are portable across its GPUs
                    "profile": {k: r.to_json() for k, r in (self.profile or {}).items()}}
        onnx_sha = hashlib.sha256(model_bytes).hexdigest()
        library = f"{lib.name} {lib.version_text}"
        folder = (self.cache_dir or default_cache_dir()) if self.cache else None
        engine_path = folder / f"{cache_key(onnx_sha, library, settings)}.engine" if folder else None
        timing_path = folder / f"{cache_key(onnx_sha, library, _timing_settings(settings))}.timing" \
            if folder and not lib.rtx else None
        if folder is not None and lib.rtx:
            self._runtime_cache = folder / f"{cache_key(onnx_sha, library, settings)}.runtime_cache"
        if engine_path is not None and engine_path.is_file():
            self._cache_note = f"engine from the cache: {engine_path}"
            return _read(engine_path)
        timing = _read(timing_path) if timing_path is not None and timing_path.is_file() else None
        probes = [n for n in graph.out_map.values() if n not in graph.graph_outputs]
        data, self._built, timing_out = build_engine(lib, model_bytes, plan, self.profile, probes=probes,
                                                     marked=marked, workspace=self.workspace, timing_cache=timing,
                                                     what=f"{self.spec} ({self._what()})")
        if engine_path is not None:
            write_bytes_atomic(engine_path, data, parents=True)
            if timing_out:
                write_bytes_atomic(timing_path, timing_out, parents=True)
            self._cache_note = f"engine built and cached: {engine_path}"
        return data

    # -- running -------------------------------------------------------------------------------------------------
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:  # dynamic axes and no profile given: this feed's shapes, widened by the caps
            self.build(feed)
            self._start()
        session = self._session
        ready = check_feed(feed, session.io(), "the engine")
        if self.profile:
            check_within(self.profile, {k: v.shape for k, v in ready.items()})
        raw, debug = session.infer(ready)
        raw = {**debug, **raw}
        self._skipped = session.skipped
        out, fused = {}, []
        for original, name in self._graph.out_map.items():
            if name not in raw:
                fused.append(original)
                continue
            arr = raw[name]
            out[original] = arr.astype(np.float32, copy=False) if np.issubdtype(arr.dtype, np.floating) else arr
        self._fused = tuple(fused)
        self._save_runtime_cache()
        return out

    def _save_runtime_cache(self) -> None:
        from cp_debug.files import write_bytes_atomic

        data = self._session.save_runtime_cache() if self._session is not None else None
        if data and self._runtime_cache is not None:
            write_bytes_atomic(self._runtime_cache, data, parents=True)

    def _deactivate(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None

    # -- what it says --------------------------------------------------------------------------------------------
    @property
    def missing_outputs(self) -> list[str]:
        """Probes the prepared graph lacks (INT8), then probes the engine did not hand back (fused away)."""
        lost = list(self._graph.missing) if self._graph is not None else []
        return lost + [n for n in self._fused if n not in lost]

    def unobserved(self) -> dict[str, str]:
        return {n: FUSED for n in self._fused}

    def quant_amax(self) -> dict[str, float]:
        quantized = self._graph.quantized if self._graph is not None else None
        return dict(quantized.activation_amax) if quantized is not None else {}

    def settings(self) -> dict:
        plan, lib = self._plan, self._lib
        return {
            "backend": str(self.spec),
            "library": None if lib is None else lib.name,
            "tensorrt": None if lib is None else lib.version_text,
            "build_plan": None if plan is None else plan.to_json(),
            "build": None if self._built is None else self._built.to_json(),
            "engine_file": None if self.engine_file is None else str(self.engine_file),
            "profile": None if not self.profile else {k: r.to_json() for k, r in self.profile.items()},
            "cache": self._cache_note,
            "workspace": self.workspace,
            "precision_transform": None if self._graph is None else self._graph.transform.to_json(),
            "extra_outputs": len(self.extra_outputs),
            "missing_outputs": self.missing_outputs,
            "fused": list(self._fused),
            "debug_tensors_skipped": dict(self._skipped),
            "library_warnings": [] if self._session is None else self._session.warnings(),
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
    except OSError as failed:
        raise BadInputError(f"cannot read {path}: {failed.strerror or failed}") from failed


def _timing_settings(settings: dict) -> dict:
    """A timing cache serves every build of one prepared graph with one typing and precision, on one GPU, whatever
    its probes and profile: keyed by those alone."""
    plan = settings["plan"]
    return {"strongly_typed": plan["strongly_typed"], "flags": plan["flags"], "tf32": plan["tf32"],
            "gpu": settings["gpu"]}


def _gpu_name() -> str | None:
    """This machine's GPU (TensorRT engines are built for one), as the environment records it."""
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
    for entry in info.get("Layers", []):  # the inspector's JSON: one dict per engine layer
        if not isinstance(entry, dict) or not entry.get("Outputs"):
            continue
        fmt = str(entry["Outputs"][0].get("Format/Datatype", "")).lower()  # e.g. "Row major linear FP16 format"
        kind = next((k for k, keys in _FORMAT_KEYS if any(key in fmt for key in keys)), None)
        if kind is None:
            continue
        counts[kind] = counts.get(kind, 0) + 1
    return counts or None

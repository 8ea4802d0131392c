"""ONNX Runtime runner: CPU or CUDA EP, at FP32 / TF32 / FP16 / INT8 / FP8 (NVFP4 / MXFP8 emulated), probes exposed.

Precision is applied to the ONNX graph (FP16 conversion, Q/DQ insertion), so what ORT really computed has to be
checked afterwards: the CPU provider has few float16 kernels and wraps float16 nodes in Casts, running them in
float32. `precision_report()` reads ORT's optimised graph (and, on CUDA, its node-to-EP assignment) and says
what ran (`ort_precision.py` reads the facts and writes the report; this module holds the session).

On the CPU a graph holding float16 tensors (an FP16 conversion, a deployed FP16 file) is by default run as a GPU
runs it: `precision.half_storage` rounds every float16 tensor after its node in a float32 graph, since the CPU
provider drops the Cast pairs it inserts and keeps activations in float32 (no overflow, no rounding). The lockstep's
float16 segments (`fp16_io`) alike: float16 in and out, every tensor inside rounded after its node, so that a chain of
segments computes what the whole graph as deployed computes (`bisect/stages/unprobed.chain_is_deployed`).
`CPDEBUG_ORT_CPU_HALF=native` runs ONNX Runtime's own CPU float16. A user's file ONNX Runtime refuses as it is written
never gets here, where its float32-widened twin would load: it stops the run first (`ort_load.py`, exit 3).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from cp_debug.backends.base import PrecisionReport, Runner
from cp_debug.backends.ort import ort_kept
from cp_debug.backends.ort.ort_graphs import nhwc_safe, reads_inside
from cp_debug.backends.feed import check_feed, same_feed
from cp_debug.backends.graph_loader import PRECISION_TRANSFORMS, PrecisionTransform, PreparedGraph, PrepareGraph
from cp_debug.backends.ort.ort_precision import (FP8_ORT_OPT_LEVEL, HALF_ENV, GraphFacts, graph_facts,
                                             precision_report_from_facts, probe_effect)
from cp_debug.backends.ort.ort_session import (INT8_CPU_BOUND, INT8_SESSION_CONFIG, SessionSettings,  # noqa: F401
                                           exact_int8, first_line, make_session, ort_errors, ort_version)
from cp_debug.backends.spec import CAPABILITIES, BackendSpec
from cp_debug.determinism import Determinism, cpu_int8_path
from cp_debug.graph.switches import switch_feed, switched_graph
from cp_debug.errors import BackendRuntimeError, BackendUnavailableError, BadInputError
from cp_debug.precision.held import FLOAT8_GRAPHS, file_precision

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import torch

ORT_CUDA_HINT = "ort-cuda needs onnxruntime-gpu: pip uninstall -y onnxruntime && pip install 'cp-debug[gpu]'"

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(bfloat16)": None, "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}


# what an activation makes: kept whole in a server between commands (ort_kept.py)
_MADE = ("_sess", "_inputs", "_graph", "_transform", "_facts", "_probe_effect", "_deployed", "_made_from",
         "_left_kernels", "_providers", "_held_half", "_held_quant", "determinism", "switched")


class OrtRunner(Runner):
    """Runs an ONNX model in ONNX Runtime (the `ort-*` specs).

    model: ONNX file or ModelProto (never modified).
    extra_outputs: intermediate tensors (original names) to return as well; for INT8 they are mapped through the
        quantizer's renaming (`tensor_map`) and returned under their original names.
    calib_feeds: calibration inputs, required for INT8.
    keep_fp32_nodes: node names kept in FP32 by the FP16 conversion. exclude_int8_nodes: nodes left unquantized.
    threads: ORT intra-op threads (None: ORT's default).
    spinning: let idle ORT threads busy-wait for the next run (ORT's default; off when other work interleaves).
    check_model: run the ONNX checker on a ModelProto given directly (off for segments cut by cp_debug itself).
    int8_model: for ort-*-int8, an already quantized Q/DQ model (e.g. exported from a PTQ checkpoint) run as it
        is instead of quantizing `model`; extra outputs absent from it are reported missing, never guessed.
    fp16_io: for ort-*-fp16, the converted graph takes and returns float16 (no Casts at its edges): float32 feeds
        are converted on the way in, float16 outputs are returned as they are (the lockstep's segments, whose
        values cross every cut in float16 as the deployed graph holds them).
    prepack: False: the kernels read the weights where they lie (`session.disable_prepacking`), for a session run
        once (a local-error session: 135m8's made in 0.08 against 0.5 CPU s; the values within float16's rounding).
    shared_arena: host memory comes from one arena of ONNX Runtime's environment for the process
        (`session.use_env_allocators`), not the session's own, whose pages each fresh session faulted in anew (48 of
        128 CPU seconds of an awml-base `--level all` bisect's lockstep, a session per segment).
    The graph is prepared by `graph_loader()` (`graph_loader.PrepareGraph`, shared with TensorRT); this class holds
    the session.
    """

    capabilities = CAPABILITIES["ort"]  # infer_some, int8_model=, keep_fp32_nodes=, lockstep segments

    def __init__(self, model: "onnx.ModelProto | str | Path", spec: BackendSpec, *,
                 extra_outputs: Iterable[str] = (), calib_feeds: Sequence[dict[str, np.ndarray]] | None = None,
                 keep_fp32_nodes: Iterable[str] = (), exclude_int8_nodes: Iterable[str] = (),
                 determinism: Determinism = Determinism(), threads: int | None = None, calib_method: str = "minmax",
                 spinning: bool = True, check_model: bool = True,
                 int8_model: "onnx.ModelProto | str | Path | None" = None,
                 fp16_io: bool = False, shared_arena: bool = False, graph_facts: bool = True, prepack: bool = True):
        if spec.framework != "ort":
            raise BadInputError(f"OrtRunner runs ort-* specs, not {spec}")
        super().__init__(str(spec))
        self.spec = spec
        self._model_src = model
        self.extra_outputs = tuple(dict.fromkeys(extra_outputs))
        self.calib_feeds = calib_feeds
        self.keep_fp32_nodes = tuple(keep_fp32_nodes)
        self.exclude_int8_nodes = tuple(exclude_int8_nodes)
        self.determinism = determinism
        self.threads = threads
        self.calib_method = calib_method
        self.spinning = spinning
        self.check_model = check_model
        self.int8_model = int8_model
        self.fp16_io = fp16_io and spec.precision == "fp16"
        self.shared_arena = shared_arena
        self.prepack = prepack
        self.switches: tuple[str, ...] = ()  # set before activate: tensors whose readers `infer_switched` feeds
        self.dump_facts = graph_facts  # False: ORT's optimised graph not written and read back (no precision facts)
        self._reset()

    def _reset(self) -> None:
        self._sess = None
        self._inputs: dict[str, tuple[np.dtype | None, list]] = {}
        self._graph: PreparedGraph | None = None
        self._transform = PrecisionTransform()
        self._facts: GraphFacts | None = None
        self._probe_effect: str | None = None
        self._deployed = None  # (session, facts) of the graph without probes, where probes kept INT8 kernels unfused
        self._made_from = None  # (the model the session was made from, its live nodes) where probes are exposed
        self._left_kernels: list = []  # `probes_left_kernels`' answer once asked (kept with the session in a server)
        self._unprobed = None  # the session it made where the kernels differ, until `infer_unprobed` runs it
        self._providers: list = []
        self._held_half, self._held_quant, self._as_run = False, None, None  # _as_run: `graph_as_run`
        self._held: ort_kept.Held | None = None  # kept in a server between commands (ort_kept.py)
        self._spoken: set = set()  # the input shapes run so far (what a kept session's first runs said)
        self.switched: tuple[str, ...] = ()  # those of `switches` its session switches (`graph.switches`)

    def graph_loader(self) -> PrepareGraph:
        """The loader that prepares this runner's graph: the spec's precision transform, the probes exposed (a
        given Q/DQ model, `int8_model`, is run as it is)."""
        qdq = self.int8_model is not None and self.spec.precision == "int8"
        transform = "qdq_model" if qdq else PRECISION_TRANSFORMS.get(self.spec.precision, "none")
        return PrepareGraph(self.int8_model if qdq else self._model_src, str(self.spec), transform,
                            extra_outputs=self.extra_outputs, calib_feeds=self.calib_feeds,
                            keep_fp32_nodes=self.keep_fp32_nodes, exclude_int8_nodes=self.exclude_int8_nodes,
                            calib_method=self.calib_method, keep_io_types=not self.fp16_io, check=self.check_model)

    # -- the contract ------------------------------------------------------------------------------------
    def _activate(self) -> None:
        import onnxruntime as ort

        if self.spec.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailableError(ORT_CUDA_HINT)
        self._reset()
        key = self._kept_key() if ort_kept.keeping() else None
        self._held = ort_kept.take(key) if key else None
        if self._held is not None:  # a server's earlier command made it (ort_kept.py)
            self.__dict__.update(self._held.state)
            return
        if key is None:
            return self._make()
        with ort_kept.speaking() as said:
            self._make()
        if said is not None and said.heard_fd2:
            self._held = ort_kept.Held(key, {n: getattr(self, n) for n in _MADE}, said.to_json(),
                                        device=self.spec.device)
            if self.spec.device == "cuda":
                self._held.shrink = ort_kept.shrinker(self._held)

    def _make(self) -> None:
        """Prepare the graph and make the sessions."""
        graph = self.graph_loader()()
        self._graph, self._transform, model = graph, graph.transform, graph.model
        from cp_debug.precision.half_storage import holds_half_constants

        qdq, held = graph.transform.kind == "qdq_model", file_precision(model)
        self._held_half = self.spec.precision != "fp16" and not qdq and holds_half_constants(model)
        # `ort-*-fp8` / -nvfp4 / -mxfp8, a deployed FP8 file; a deployed INT8 Q/DQ file (`ort@DIR`) reports at int8 too
        self._held_quant = held if held in FLOAT8_GRAPHS or (held == "int8" and self.spec.precision == "fp32") else None
        if self._held_quant in FLOAT8_GRAPHS:  # why: FP8_ORT_OPT_LEVEL; the settings' graph_optimization_level says it
            self.determinism = replace(self.determinism, ort_opt_level=FP8_ORT_OPT_LEVEL)
        self._providers = self._provider_list(model)
        declared = None  # emulated float16 storage: the facts are the float16 graph's, not its float32 emulation's
        if self._emulates_half(model):
            from cp_debug.precision.half_storage import emulate_half_storage

            emulated = emulate_half_storage(model)
            if emulated.changed:
                self._transform = replace(self._transform, half_storage=emulated.to_json())
                declared, model = graph_facts(model) if self.dump_facts else None, emulated.model
        self._as_run, how = model, self._how()
        if declared is not None:  # the facts said are the float16 graph's: ORT's optimised graph not written
            how = replace(how, dump_facts=False)
        probed = self.dump_facts and len(model.graph.output) > len(graph.graph_outputs)
        live_for = graph.graph_outputs if probed else None  # its nodes, to compare with the graph as deployed's
        made, self.switched = switched_graph(model, self.switches) if self.switches else (model, ())
        self._sess, self._facts = make_session(made, self._providers, True, how, live_for)
        self._made_from = (model, self._facts.nodes) if probed and self._facts.nodes else None
        if declared is not None:
            self._facts = replace(declared, cpu_fallback=self._facts.cpu_fallback)
        plain = graph.plain
        if plain is not None and len(model.graph.output) != len(plain.graph.output):
            plain_sess, plain_facts = make_session(plain, self._providers, False, self._how())
            self._probe_effect = probe_effect(plain_facts, self._facts)
            self._deployed = (plain_sess, plain_facts) if self._probe_effect else None
        self._inputs = {i.name: (_ORT_TYPES.get(i.type), list(i.shape)) for i in self._sess.get_inputs()}

    def _kept_key(self) -> str | None:
        """What this runner's activation is made of, for the server's keep (`ort_kept.key_of`)."""
        parts = (str(self.spec), self.extra_outputs, self.keep_fp32_nodes, self.exclude_int8_nodes, self.switches,
                 self.determinism, self.threads, self.calib_method, self.spinning, self.check_model, self.fp16_io,
                 self.shared_arena, self.dump_facts, self.prepack, half_mode(), ort_kept.feeds_digest(self.calib_feeds))
        return ort_kept.key_of(parts, (self._model_src, self.int8_model))

    def _run(self, feed: dict, where: str, run):
        """`run()`: with a kept session, what its first run at this input shape says is heard or said again."""
        if self._held is None:
            return run()
        try:
            return ort_kept.first_run(self._held, self._spoken, (where, *ort_kept.signature(feed)), run)
        except BaseException:
            self._held.spoiled = True  # a failed run's session is not kept
            raise

    def _infer(self, feed: dict[str, np.ndarray], only: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        ort_feed = check_feed(feed, self._inputs)
        out_map = self._out_map(only)
        wanted = list(dict.fromkeys(out_map.values()))
        try:
            values = self._run(ort_feed, "run", lambda: self._sess.run(wanted, ort_feed))
        except ort_errors("InvalidArgument", "InvalidGraph") as err:
            raise BadInputError(f"ONNX Runtime rejected the inputs: {first_line(err)}") from err
        except ort_errors("Fail") as err:  # a node cannot run these inputs (a shape past its position
            raise BackendRuntimeError(f"ONNX Runtime could not run the model on these inputs: {first_line(err)}") \
                from err  # table's rows): the model's or the backend's limit, not a bug of cp_debug
        by_name = dict(zip(wanted, values))
        out: dict[str, np.ndarray] = {}
        for original, name in out_map.items():
            arr = np.asarray(by_name[name])
            if self.fp16_io and arr.dtype == np.float16:
                out[original] = arr
            else:
                out[original] = arr.astype(np.float32, copy=False) if np.issubdtype(arr.dtype, np.floating) else arr
        return out

    def infer_switched(self, feed: dict[str, np.ndarray], refs: dict) -> dict[str, np.ndarray]:
        """Every output, the readers of each tensor of `refs` (tensor -> value; of `switched`) reading that value: the
        local values of the local-error segments, in the probed session (`graph.switches`: no session more)."""
        names, fed = [o.name for o in self._sess.get_outputs()], {**check_feed(feed, self._inputs), **switch_feed(refs)}
        return dict(zip(names, self._run(fed, "switched", lambda: self._sess.run(names, fed))))

    def probes_left_kernels(self) -> bool | None:
        """Whether ORT's optimised graph without the probe outputs computes the graph's outputs with the probed
        session's nodes (`ort_unprobed.py`): one session made and not run, once (a server's kept session keeps the
        answer); None where it cannot tell. Where not True, that session is held for one run (`infer_unprobed`):
        the graph as deployed, not made a second time to be run (but where it was made not to run: see below)."""
        if self._made_from is None:
            return None
        if not self._left_kernels:
            from cp_debug.backends.ort.ort_unprobed import without_probes

            model, nodes = self._made_from
            outputs = self._graph.graph_outputs
            plain = without_probes(model, outputs)
            # cp_debug's FP16 conversion run as float16 storage emulated (float32 kernels, a Cast pair after every
            # node: a probe blocks no fusion the Casts did not) is all but never run again: its session made only to
            # read the optimised graph, its weights not prepacked (the kernels' own copy of them, made once the graph
            # is optimised: 2.1 → 0.9 CPU s for a 136 M model); where it must run, one is made as the probed one was
            light = self._transform.kind == "fp16" and self._transform.half_storage is not None
            how = replace(self._how(), prepack=False) if light else self._how()
            sess, facts = make_session(plain, self._providers, False, how, outputs)
            self._left_kernels.append(facts.nodes == nodes if facts.nodes else None)
            self._unprobed = None if self._left_kernels[0] else (
                (lambda: make_session(plain, self._providers, False, self._how())[0]) if light else sess)
        return self._left_kernels[0]

    def infer_unprobed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        sess, self._unprobed = self._unprobed, None
        if callable(sess):  # the check's session was made not to run (`probes_left_kernels`): one that may
            sess = sess()
        return None if sess is None else self._plain_run(sess, feed)

    def infer_as_written(self, path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        from cp_debug.ort_sessions import first_of, take
        sess = take(path, self.determinism.numbers_key(self.threads, self._how().int8))
        if (sess is None or self.spec.device != "cpu" or self._transform.kind != "none"
                or self._held_quant in FLOAT8_GRAPHS or self._transform.half_storage is not None or self._graph is None
                or {i.name for i in sess.get_inputs()} != set(self._inputs)
                or not set(self._graph.graph_outputs) <= {o.name for o in sess.get_outputs()}):
            return None
        return self._plain_run(sess, feed, first_of(path))  # the decode's first run: taken where its feed is this

    def _plain_run(self, sess, feed: dict[str, np.ndarray], first: tuple | None = None) -> dict[str, np.ndarray]:
        names = [o.name for o in sess.get_outputs()]
        fed = check_feed(feed, self._inputs)  # `first`: (feed, outputs) of a run `sess` made: that run's on its feed
        by_name = first[1] if first is not None and same_feed(first[0], fed) and set(names) <= set(first[1]) \
            else dict(zip(names, self._run(fed, "unprobed", lambda: sess.run(names, fed))))
        out = {k: np.asarray(by_name[t]) for k, t in self._graph.out_map.items() if t in by_name}
        return {k: v.astype(np.float32, copy=False) if np.issubdtype(v.dtype, np.floating) else v
                for k, v in out.items()}

    def infer_deployed(self, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], PrecisionReport] | None:
        if self._deployed is None:
            return None
        sess, facts = self._deployed
        names = [o.name for o in sess.get_outputs()]
        fed = check_feed(feed, self._inputs)
        by_name = dict(zip(names, self._run(fed, "deployed", lambda: sess.run(names, fed))))
        out = {k: np.asarray(by_name[t], np.float32) for k, t in self._graph.out_map.items() if t in by_name}
        return out, precision_report_from_facts(self.spec, facts, self._transform)

    def _infer_device(self, feed: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Through IO binding (`ort_binding.py`): inputs read where they lie, outputs and probes left on the
        session's device as torch tensors, float32 as `infer` gives them."""
        import torch

        from cp_debug.backends.ort.ort_binding import run_bound

        out_map = self._out_map(None)
        wanted = list(dict.fromkeys(out_map.values()))
        try:
            by_name = self._run(feed, "bound", lambda: run_bound(self._sess, feed, self._inputs, wanted,
                                                                 self.spec.device))
        except ort_errors("InvalidArgument", "InvalidGraph") as err:
            raise BadInputError(f"ONNX Runtime rejected the inputs: {first_line(err)}") from err
        out: dict[str, torch.Tensor] = {}
        for original, name in out_map.items():
            t = by_name[name]
            keep_half = self.fp16_io and t.dtype == torch.float16
            out[original] = t.float() if t.is_floating_point() and not keep_half else t
        return out

    def _out_map(self, only: Iterable[str] | None) -> dict[str, str]:
        """Original name -> graph tensor of what a run returns: every output, or the graph's outputs and, of the
        extra outputs, those `only` names."""
        out_map = self._graph.out_map
        if only is not None:
            keep = set(self._graph.graph_outputs) | set(only)
            out_map = {k: v for k, v in out_map.items() if k in keep}
        return out_map

    def _infer_some(self, feed: dict[str, np.ndarray], extra: Iterable[str]) -> dict[str, np.ndarray]:
        """The graph's outputs and only the `extra` outputs named (original names): a session that exposes many
        tensors, read a part at a time (ORT computes the others and does not copy them out)."""
        return self._infer(feed, only=extra)

    def _deactivate(self) -> None:
        if self._held is not None:  # kept for the server's next command (ort_kept.py)
            ort_kept.put(self._held)
            self._held = None
        self._sess = self._unprobed = None  # what was learnt (precision facts, amax, names) stays readable after

    # -- information -------------------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._graph.out_map) if self._graph is not None else []

    @property
    def missing_outputs(self) -> list[str]:
        return list(self._graph.missing) if self._graph is not None else []

    def quant_amax(self) -> dict[str, float]:
        return dict(self.quantized.activation_amax) if self.quantized is not None else {}

    @property
    def quantized(self):
        """The `QuantizedModel` (INT8 after activate), else None."""
        return self._graph.quantized if self._graph is not None else None

    def settings(self) -> dict:
        return {
            "backend": str(self.spec),
            "onnxruntime": ort_version(),
            "providers": [p if isinstance(p, str) else p[0] for p in self._providers] or self._provider_names(),
            "provider_options": {p[0]: p[1] for p in self._providers if not isinstance(p, str)},
            "graph_optimization_level": self.determinism.settings()["onnxruntime"]["graph_optimization_level"],
            "deterministic_compute": self.determinism.enabled,
            "intra_op_threads": self.threads,
            **({"config_entries": dict(INT8_SESSION_CONFIG)} if self.spec.precision == "int8" else {}),
            **({"cpu_int8_path": cpu_int8_path(), "cpu_int8_bound": INT8_CPU_BOUND}
               if self.spec.precision == "int8" and self.spec.device == "cpu" else {}),
            "precision_transform": self._transform.to_json(),
            "extra_outputs": len(self.extra_outputs),
            "missing_outputs": self.missing_outputs,
        }

    def precision_report(self) -> PrecisionReport | None:
        if self._facts is None:  # never activated
            return None
        # a file that holds float16 (float8 Q/DQ) itself, a deployed pair run as `ort@DIR`, asked for fp16 (fp8)
        held = self._held_quant or ("fp16" if self._held_half else None)
        spec = replace(self.spec, precision=held) if held else self.spec
        return precision_report_from_facts(spec, self._facts, self._transform, self.missing_outputs,
                                           self._probe_effect)

    @property
    def graph_facts(self) -> GraphFacts | None:
        """What ORT's optimised graph holds (compute dtypes, EP fallback): None before activate."""
        return self._facts

    @property
    def graph_as_run(self) -> "onnx.ModelProto | None":
        """The graph its session runs (converted, float16 storage emulated, probes exposed; None: not activated)."""
        return self._as_run

    @property
    def transform(self) -> PrecisionTransform:
        """The precision transform applied to the graph (kind, counts)."""
        return self._transform

    # -- internals ---------------------------------------------------------------------------------------
    def _emulates_half(self, model) -> bool:
        """CPU, not INT8, the mode not native, and an FP16 graph (converted here, or holding float16 weights or Casts
        itself); a lockstep float16 segment (`fp16_io`) too where a node reads a tensor another computed (a segment
        of one node is left to ORT's own Casts around it, which round its output as the emulation would)."""
        if self.spec.device != "cpu" or self.spec.precision == "int8" or half_mode() == "native":
            return False
        if self.fp16_io and not reads_inside(model):
            return False
        from cp_debug.precision.half_storage import holds_half_constants

        return self.spec.precision == "fp16" or holds_half_constants(model)

    def _provider_names(self) -> list[str]:
        cpu = ["CPUExecutionProvider"]
        return ["CUDAExecutionProvider", *cpu] if self.spec.device == "cuda" else cpu

    def _how(self) -> SessionSettings:
        return SessionSettings(str(self.spec), self.determinism, self.threads, self.spinning, self.shared_arena,
                               self.spec.precision == "int8", self.dump_facts, self.prepack)

    def _provider_list(self, model: "onnx.ModelProto | None" = None) -> list:
        if self.spec.device == "cuda":
            nhwc = model is not None and nhwc_safe(model)
            opts = self.determinism.ort_cuda_provider_options(tf32=self.spec.precision == "tf32",
                                                              half=self.spec.precision == "fp16" and nhwc)
            return [("CUDAExecutionProvider", opts), ("CPUExecutionProvider", {})]
        return [("CPUExecutionProvider", {})]


def half_mode() -> str:
    """`CPDEBUG_ORT_CPU_HALF`: "emulated" (default) or "native"."""
    import os

    mode = os.environ.get(HALF_ENV, "emulated").strip().lower() or "emulated"
    if mode not in ("emulated", "native"):
        raise BadInputError(f"{HALF_ENV}={mode!r}: use 'emulated' (default) or 'native'")
    return mode


"""What is being debugged: a model cut into stages, each a torch module and/or an ONNX graph.

A plain model is one stage. CenterPoint is two (the voxel encoder, the backbone/neck/head) joined by
PyTorch glue (scatter) that every backend shares, so divergence can be followed across both ONNX files.
The subject computes each stage's feed from the previous stages' outputs of the *same* backend, which is
how error propagates end to end.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import onnx

from cp_debug.bisect.subjects.model_facts import ModelFacts
from cp_debug.bisect.result import BevScene
from cp_debug.probes.naming import ProbeMap, map_modules_to_onnx
from cp_debug.probes.sized_shapes import sized_shapes
from cp_debug.probes.torch_trace import ModuleTrace
from cp_debug.probes.trace_cache import traced

LEVELS = ("stage", "block", "layer", "all")
# set by `api.bisect_run.load_subject` around a recipe's subject: every backend of the run runs ONNX Runtime sessions
# of cp_debug's export (a recipe may read its subject back without torch: `recipes/centerpoint/kept_subject.py`)
ONNX_RUNTIME_ONLY: ContextVar[bool] = ContextVar("cpdebug_onnx_runtime_only", default=False)
# ONNX ops that end a module's computation without being it (a bias Add, a reshape back): its class says more
_LAST_STEPS = frozenset({"Add", "Mul", "Reshape", "Transpose", "Identity", "Cast", "Squeeze", "Unsqueeze", "Flatten"})


@dataclass
class Stage:
    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    # torch.nn.Module in eval mode, or None for ONNX-only subjects (made where first read: `torch_side`)
    module: Any | None = field(default=None, repr=False, compare=False)
    example_inputs: tuple = field(default=(), repr=False, compare=False)  # torch tensors for export and the trace
    onnx_model: onnx.ModelProto | None = None
    export: Callable[[], Any] | None = None  # () -> ExportResult, called lazily when an ONNX model is needed
    exporter: str | None = None
    export_cache: str | None = None  # "hit" | "stored" | None (not through export/cache.py): ExportResult.cache
    export_warnings: tuple = ()
    export_note: str | None = None
    stage_probes: tuple[str, ...] | None = None  # explicit `stage`-level probes (recipes); None = derived
    output_aliases: dict[str, str] = field(default_factory=dict)  # output name -> the module that produces it
    # another module tree's names for this stage's modules -> ours (a deployed file's scopes; probes/naming.py)
    foreign_names: Callable[[str], str | None] | None = None
    # what else the module's forward depends on beyond its classes' source files (a `--torch` file's own code,
    # `loaders.user_code`): part of the stored trace's key (`probes/trace_cache.traced`), as of the export's
    code_key: Any = None
    qdq_export: Callable[[], Any] | None = None  # --int8: () -> ExportResult of the Q/DQ graph (same exporter names)
    _qdq: onnx.ModelProto | None = field(default=None, repr=False)
    _trace: ModuleTrace | None = field(default=None, repr=False)
    _map: ProbeMap | None = field(default=None, repr=False)
    # the module and its example inputs made where first read: () -> (module, example_inputs). A stage read back
    # from what an earlier run kept (its graph, trace and probe map: `recipes/centerpoint/kept_subject.py`) runs
    # ONNX Runtime without torch; a finding that reads its module builds it then. `has_module` asks without making it
    torch_side: Callable[[], tuple[Any, tuple]] | None = field(default=None, repr=False)
    # where the run asks it (`keep_said`): what `onnx()` and `probe_map()` said (`export.said.Said`), to say again
    said: list | None = field(default=None, repr=False)
    after_said: Callable[[], None] | None = field(default=None, repr=False)  # called once `keep_said` has kept it
    kept_bytes: int = 0  # with `torch_side`: the module's weights' bytes, as `export.torch_export.weight_bytes`

    @property
    def has_module(self) -> bool:
        """A torch module, made or still to make: its probes are the module's (the module's not made by asking)."""
        return self.__dict__.get("torch_side") is not None or self.__dict__.get("_module") is not None

    @contextmanager
    def keep_said(self) -> Iterator[None]:
        """What the block says kept in `said` where the stage keeps it (a subject to keep for a later run)."""
        if self.said is None:
            yield
            return
        from cp_debug.export.said import Said

        with Said() as said:
            yield
        self.said.append(said.to_json())
        if self.after_said is not None:
            self.after_said()

    def weight_bytes(self) -> int:
        """The bytes of the module's parameters and buffers (not made to count them where `torch_side` will)."""
        if self.__dict__.get("torch_side") is not None:
            return self.kept_bytes
        from cp_debug.export.torch_export import weight_bytes

        return weight_bytes(self.module)

    # -- lazily computed facts ---------------------------------------------------------------------------
    def trace(self) -> ModuleTrace | None:
        if self._trace is None:
            if self.has_module:
                # read back where a run made it
                self._trace = traced(self.module, self.example_inputs, extra=self.code_key)
            else:
                self._trace, self._map = onnx_only_tables(self.onnx())
        return self._trace

    def onnx(self) -> onnx.ModelProto:
        if self.onnx_model is None:
            result = self.export()
            self.onnx_model = result.model
            self.exporter = result.exporter
            self.export_cache = result.cache
            self.export_warnings = tuple(result.warnings)
            if result.fallback_reason:
                self.export_note = f"torch.export could not capture the model ({result.fallback_reason}); " \
                                   "exported with the TorchScript exporter"
        return self.onnx_model

    def qdq_onnx(self) -> onnx.ModelProto | None:
        """The stage's Q/DQ graph (the PTQ model's quantizers on), exported once when first asked; None without
        --int8. Its tensors carry the FP32 export's names wherever the two graphs share a node."""
        if self._qdq is None and self.qdq_export is not None:
            self._qdq = self.qdq_export().model
        return self._qdq

    @property
    def made_probe_map(self) -> ProbeMap | None:
        """The probe map if the run has made it already, else None (`probe_map()` would export the stage)."""
        return self._map

    def probe_map(self) -> ProbeMap | None:
        if self._map is None:
            if not self.has_module:
                self.trace()
            else:
                model = self.onnx()
                sized = sized_shapes(model, self.module, self.example_inputs, self.input_names,
                                     code_key=self.code_key)
                self._map = map_modules_to_onnx(model, self.trace(), sized=sized)
        return self._map

    # -- probe selection ---------------------------------------------------------------------------------
    def probes_at(self, level: str) -> list[str]:
        """Module names (in execution order) to probe at `level`."""
        tr = self.trace()
        if tr is None:
            return []
        if not self.has_module:  # ONNX only: every computed float tensor at `all`, the scopes' ends otherwise
            return [t for t in _onnx_level(self, tr, level) if t not in self.output_names]
        if level == "stage" and self.stage_probes is not None:
            return [p for p in tr.order if p in set(self.stage_probes)]
        if level == "all":
            return list(tr.order)
        if level == "layer":
            return [q for q in tr.order if tr.is_leaf(q)]
        want = 1 if level == "stage" else 2
        probes = {tr.call_of(q) for q in tr.order}  # a call with a probe of its own (`self_attn[0]` for a tuple's)
        chosen = [q for q in tr.order if tr.depth(q) == want or (tr.depth(q) < want and tr.is_leaf(q))
                  or (tr.depth(q) > want and _stands_in(tr, q, want, probes))]
        return chosen if level == "stage" else [k for q in chosen for k in _layers_of(tr, q)]

    def sites(self) -> dict:
        """Where each probe's value is in the module's run (a module's k-th call, a tensor of a tuple output):
        `probe name -> sites.Site`, for the torch runner; empty for an ONNX-only stage."""
        tr = self.trace() if self.has_module else None
        return dict(tr.sites) if tr is not None else {}

    def children(self, name: str) -> list[str]:
        tr = self.trace()
        if tr is not None and not self.has_module:  # ONNX only: the tensors inside the scope `name` ends
            from cp_debug.probes.node_names import scope_members

            return scope_members(list(tr.order), _probe_chains(self, tr), name)
        return list(tr.kids(name)) if tr else []

    def op_type(self, name: str) -> str | None:
        """What computes the probe: its ONNX op; a leaf module's class where that op is only the last step of it
        (a Linear exported as MatMul + Add says Linear, not Add)."""
        pm, tr = self._map, self._trace
        op = pm.op_types.get(name) if pm is not None else None
        if op in _LAST_STEPS and tr is not None and self.has_module and tr.is_leaf(name):
            return tr.types.get(name, op)
        if op is not None:
            return op
        return tr.types.get(name) if tr else None


_MAKING = threading.Lock()


def _torch_part(attr: str) -> property:
    """`Stage.module` / `Stage.example_inputs`: made by `torch_side` where first read (one thread makes them)."""
    def get(self):
        if self.__dict__.get("torch_side") is not None:
            with _MAKING:
                side = self.__dict__.get("torch_side")
                if side is not None:
                    self.__dict__["_module"], self.__dict__["_examples"] = side()
                    self.__dict__["torch_side"] = None
        return self.__dict__.get(attr, None if attr == "_module" else ())

    def put(self, value) -> None:
        self.__dict__[attr] = value

    return property(get, put)


Stage.module = _torch_part("_module")  # type: ignore[assignment]
Stage.example_inputs = _torch_part("_examples")  # type: ignore[assignment]


def _stands_in(tr: ModuleTrace, name: str, want: int, probes: set[str]) -> bool:
    """Does `name`, deeper than the level's depth `want`, stand in for a module of that depth that is no probe (its
    output no tensor: a HF BertModel's encoder returns a ModelOutput)? Where no call between them is a probe: a
    BERT's layers at the block level, not its embeddings alone and the model's output."""
    call = tr.parents.get(tr.call_of(name), "")
    while call and tr.depth(call) >= want:
        if call in probes:
            return False
        call = tr.parents.get(call, "")
    return True


def _layers_of(tr: ModuleTrace, name: str) -> list[str]:
    """A Sequential that runs a stack of layers of one class (a ViT's `encoder.layers`, a Transformer's layers) is
    the stack's layers at the block level, each its own probe, the stack's own output last; any other probe
    stands for itself."""
    kids = [k for k in tr.kids(name) if tr.call_of(k) == k]
    if tr.types.get(name) != "Sequential" or len(kids) < 2 or len({tr.types.get(k) for k in kids}) != 1 \
            or all(tr.is_leaf(k) for k in kids):
        return [name]
    return [*kids, name]


class DetectionVerdict(Protocol):
    """A subject's answer to "does the divergence change what the model detects on this input?"."""

    changed: bool
    summary: str  # one line for the report

    def to_json(self) -> dict: ...


class Decision(Protocol):
    """A discrete choice the glue makes between two stages (TransFusion's top-K proposals), one candidate's against
    the reference's: where they differ, every later value is about other things, not worse numbers."""

    name: str
    changed: bool  # the candidate chose otherwise
    summary: str  # one line for the report

    def to_json(self) -> dict: ...


@dataclass
class Subject:
    """A model in stages, the inputs to run, and the glue that feeds stage i from earlier outputs."""

    name: str
    stages: list[Stage]
    inputs: dict[str, np.ndarray]  # the feed of stage 0
    glue: Callable[[int, dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    facts: ModelFacts | None = None  # what the model is, for the report (its JSON `model`)
    default_level: str = "block"
    # (reference's, candidate's last-stage outputs) -> DetectionVerdict: does the divergence change what the model
    # detects on this input? (CenterPoint: decoded boxes matched box to box)
    detection_verdict: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], DetectionVerdict] | None = None
    warnings: list[str] = field(default_factory=list)  # what loading the inputs warned about (for the report)
    told: tuple[str, ...] = ()  # of those, the lines to say on the terminal at once (a train-mode model)
    # glued input -> the earlier stages' outputs the glue computes it from (default: the previous stage's outputs)
    glue_from: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the scan and its ground truth for the BEV pictures (CenterPoint); the engine keeps every side's last-stage
    # outputs (the head maps) in it, on the report
    scene: BevScene | None = None
    # the glue of a stage whose feed rests on a discrete decision: (stage index, the reference's upstream outputs,
    # the candidate's) -> (the candidate's feed made on the *reference's* decision, the `Decision` of its own, or
    # None). The candidate's later stages then run on the reference's choices, so a flipped choice is reported once
    # as a flip instead of as divergence of every later layer. None: every side's feed is `feed` of its own outputs.
    decide: Callable[[int, dict[str, np.ndarray], dict[str, np.ndarray]],
                     tuple[dict[str, np.ndarray], Decision | None]] | None = None
    # a deployment that is one graph (TransFusion-L's transfusion.onnx): (DIR, what) -> (the file, its graphs cut
    # at the stages' interfaces), which a SPEC@DIR candidate runs in place of per-stage files
    # (`bisect/subjects/deployed.py`)
    deployed_split: Callable[[Any, str], tuple[Any, tuple[onnx.ModelProto, ...]]] | None = None
    # `--generate` on an --onnx file: the reference's decode, run by the engine on the reference's probed session
    # before stage 0's feed is made (`generation.PendingDecode`, `stages/lent.py`); None: decoded already
    pending_decode: Any = None

    def feed(self, index: int, upstream: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Stage `index`'s feed, from the outputs of earlier stages of the same backend."""
        if index == 0:
            return dict(self.inputs)
        if self.glue is None:
            raise RuntimeError("a multi-stage subject needs glue")
        return self.glue(index, upstream)

    def glued_inputs(self, index: int) -> tuple[str, ...]:
        """Stage inputs computed from upstream outputs (boundary probes); stage 0's inputs are shared."""
        return () if index == 0 else self.stages[index].input_names

    def glue_sources(self, index: int, name: str) -> tuple[str, ...]:
        """The earlier outputs that glued input `name` of stage `index` is computed from."""
        if index == 0:
            return ()
        return tuple(self.glue_from.get(name, self.stages[index - 1].output_names))


def _onnx_level(stage: "Stage", tr: ModuleTrace, level: str) -> list[str]:
    """An ONNX-only stage's probes at `level`: every tensor at `all`; else the last tensor of each module scope the
    exporter left on the nodes at that depth (`probes.node_names.scope_ends`), every tensor where it left none."""
    if level == "all":
        return list(tr.order)
    from cp_debug.probes.node_names import scope_ends

    chosen = scope_ends(list(tr.order), _probe_chains(stage, tr), level)
    return list(tr.order) if chosen is None else chosen


def _probe_chains(stage: "Stage", tr: ModuleTrace) -> dict[str, tuple[str, ...]]:
    """Each probe of an ONNX-only stage → its node's chain of module scopes (`probes.node_names.scope_chains`)."""
    from cp_debug.probes.node_names import scope_chains

    pm = stage.probe_map()
    chains = scope_chains(stage.onnx())
    return {p: chains.get(pm.tensors.get(p, ""), ()) for p in tr.order} if pm is not None else {}


def onnx_only_tables(model: onnx.ModelProto) -> tuple[ModuleTrace, ProbeMap]:
    """For an ONNX file without its PyTorch module: probes are the node outputs, named by `readable_probe_names`
    (`module/Op` where the graph says the module, else the tensor)."""
    from cp_debug.probes.node_names import readable_probe_names

    producer = {t: (i, node.op_type) for i, node in enumerate(model.graph.node) for t in node.output if t}
    tensors = readable_probe_names(model)
    order = list(tensors)
    types = {name: producer[t][1] for name, t in tensors.items()}
    index = {t: producer[t][0] for t in tensors.values()}
    trace = ModuleTrace(tuple(order), {t: None for t in order}, {}, types, {}, {})
    return trace, ProbeMap(dict(tensors), dict(types), {}, index)

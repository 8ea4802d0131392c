"""The state of one bisect run, shared by its parts: options, probe specs, candidate states, the reference store.

The engine (`engine.py`) makes one `RunState`; the parts that do the work receive it and read or fill it —
stage execution (`stage_whole.py`, `stage_lockstep.py`), local error (`local_error.py`), result recording
(`record.py`) and the verdict (`verdict.py`). Nothing here runs a backend: the arrows run one way, from the
engine to the parts to this module.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cp_debug.backends.base import PrecisionReport
from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.findings.hints import Int8Range
from cp_debug.bisect.options import BisectOptions  # noqa: F401 - the engine's options, importable from here too
from cp_debug.bisect.phases import Phases
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.store import TensorStore
from cp_debug.bisect.subjects.subject import DetectionVerdict, Stage, Subject
from cp_debug.compare.diff import TensorDiff, Tolerance


@dataclass
class ProbeSpec:
    name: str
    stage: int
    kind: str  # module | output | input
    pos: float  # execution order inside the stage
    parent: str | None = None
    depth: int = 0


@dataclass
class CandidateState:
    label: str
    spec: BackendSpec
    tol: Tolerance
    results: dict[str, ProbeResult] = field(default_factory=dict)
    feeds: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # stage -> its feed, from this backend
    precision: PrecisionReport | None = None  # over every stage run so far (record.merge_precision)
    # the graph as deployed, run beside the probed one where exposing probes changed its kernels (ORT's INT8
    # fusion): its outputs judged (probe -> ProbeResult) and the precision it ran (`stage_whole.candidate_stage`)
    deployed: dict[str, ProbeResult] = field(default_factory=dict)
    deployed_precision: PrecisionReport | None = None
    # stage -> its final outputs as measured (probes exposed, or cut into segments) against its graph as deployed (no
    # probes, one session): {"measured": how, "outputs": [{output, rel_rmse, budget, ratio, beyond}]} (`unprobed.py`)
    unprobed: dict[str, dict] = field(default_factory=dict)
    unprobed_later: dict[int, tuple] = field(default_factory=dict)  # stage -> (measured outputs, how): run after
    # stage -> the graph as deployed's outputs on `feeds` (that check's): the intervention's outputs before a restore
    as_deployed: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> the runner's settings (JSON)
    # probe -> its plots' material (`compare.plot_data.HostPlots`; on a device, `compare.device_plots.DevicePlots`),
    # drawn when the report asks
    plots: dict[str, Any] = field(default_factory=dict)
    int8_amax: dict[str, float] = field(default_factory=dict)  # ONNX tensor -> calibrated amax (a file: its scales)
    # stage -> the Q/DQ graph its run quantized (`precision.int8.QuantizedModel`): its segments are cut from it, as a
    # user's file of the same quantization is (`stages/qdq_segments.py`); held while the stage runs
    int8_graphs: dict[str, Any] = field(default_factory=dict)
    int8_ranges: dict[str, Int8Range] = field(default_factory=dict)  # probe -> its range, computed while values live
    # stage -> the graph its runner ran (FP16 converted, float16 storage emulated), held for its screen (`screen.py`)
    as_run: dict[int, Any] = field(default_factory=dict)
    seconds: float = 0.0
    lockstep: bool = False  # stages run segment by segment with the reference (see lockstep.py)
    detections: DetectionVerdict | None = None  # the subject's detection verdict on this input
    decisions: list = field(default_factory=list)  # subject.Decision per decided stage feed (`Subject.decide`)
    metric_held: str | None = None  # the declared --metric's words where it was read and held (`findings/decisions.py`)
    judged_at: str = "fp32"  # the precision its noise is judged at (a deployed folder: what its files hold)
    judged_unit: float | None = None  # a weight-only precision's unit, its files' own (`DeployedStages.unit`)
    notes: dict[str, str] = field(default_factory=dict)  # probe -> what its comparison said (a mask's saturated fill)
    own_matmuls: dict[str, int] = field(default_factory=dict)  # probe -> its local segment's MatMulNBits in series
    # (probe, "local" or "") -> its diff without the reference's massive channels and the words (`compare/massive.py`)
    massive: dict[tuple[str, str], tuple] = field(default_factory=dict)
    # its library built an engine and will not run it here (`refused.py`): the error, and each stage's build facts
    refused: Any = None  # backends.trt.trt_engine.EngineRefusedError | None
    built: dict[str, dict | None] = field(default_factory=dict)
    # the root cause confirmed at the outputs by restoring the proposed causes (`findings/intervention.py`)
    intervention: Any = None


class NullProgress:
    """`cli.common.output.StepProgress`'s steps and bars, saying nothing (a run without a terminal of its own)."""

    @contextlib.contextmanager
    def step(self, text: str, final: bool = True):
        yield

    @contextlib.contextmanager
    def bar(self, description: str, total: int):
        yield lambda n=1, **fields: None

    def warn(self, text: str) -> None:
        pass


@dataclass
class RunState:
    """What the parts of one run share. `store` holds the reference's probe values (spilled past the budget)."""

    subject: Subject
    ref_label: str
    ref_spec: BackendSpec
    opts: BisectOptions
    det: object  # cp_debug.determinism.Determinism
    level: str
    progress: object = field(default_factory=NullProgress)
    store: TensorStore = field(default_factory=TensorStore)
    noise: dict[str, TensorDiff] = field(default_factory=dict)  # probe -> reference vs itself (second run)
    ref_outputs: dict[int, dict] = field(default_factory=dict)
    ref_feeds: dict[int, dict] = field(default_factory=dict)
    probes: dict[str, ProbeSpec] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    states: dict[str, CandidateState] = field(default_factory=dict)
    lockstep_runs: dict[str, tuple] = field(default_factory=dict)  # probe -> (stage, Lockstep) that last measured it
    masks: dict[int, frozenset] = field(default_factory=dict)  # id(stage graph) -> its mask tensors (graph/masks.py)
    halves: dict[int, bool] = field(default_factory=dict)  # id(stage graph) -> whether it holds float16
    ref_cache: dict[str, np.ndarray] = field(default_factory=dict)
    execution: dict[str, str] = field(default_factory=dict)  # stage name -> how it ran
    # lockstep stages whose local runs wait for a probe off (`stages/local_deferred.py`), and whether one was
    local_put_off: list = field(default_factory=list)
    local_armed: bool = False
    # probe -> the ONNX tensors exposed as outputs in the whole-stage candidate run that measured it (exposing a
    # tensor can change what ONNX Runtime computes: a bug-report window exposes the same ones)
    exposed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # candidate label -> its stages over the user's deployed files (SPEC@DIR: a `deployed.DeployedStages`); others
    # run the subject's
    deployed: dict[str, object] = field(default_factory=dict)
    lent: tuple | None = None  # the reference's stage-0 runner, active, made for the decode (`stages/lent.py`)
    lent_first: tuple | None = None  # (runner, feed, outputs) of the decode's first step on it (`lent.lent_outputs`)
    lending: object | None = None  # that runner while its session is made on a helper thread (`lent.start_lending`)
    phases: Phases = field(default_factory=Phases)  # where the command's time went (`phases.py`)

    def stage_of(self, label: str, i: int) -> Stage:
        """Stage i as candidate `label` runs it: the view over its deployed file (SPEC@DIR), else the subject's."""
        found = self.deployed.get(label)
        return found.stages[i] if found is not None else self.subject.stages[i]

    def mask_tensors(self, st: Stage) -> frozenset[str]:
        """The tensors of `st`'s graph that only reach softmaxes, comparisons and selections (`graph/masks.py`),
        worked out once a graph."""
        if st.onnx_model is None:
            return frozenset()
        key = id(st.onnx_model)
        if key not in self.masks:
            from cp_debug.graph.masks import mask_tensors

            self.masks[key] = mask_tensors(st.onnx_model)
        return self.masks[key]

    def holds_half(self, st: Stage) -> bool:
        """Whether `st`'s graph holds float16 weights or casts (`half_storage.holds_half_constants`), worked out once
        a graph."""
        if st.onnx_model is None:
            return False
        key = id(st.onnx_model)
        if key not in self.halves:
            from cp_debug.precision.half_storage import holds_half_constants

            self.halves[key] = holds_half_constants(st.onnx_model)
        return self.halves[key]

    def tolerance(self, state: CandidateState, name: str) -> Tolerance:
        """The candidate's tolerance, widened to 4× the reference's own noise at this probe (for a glued input:
        the noise of the outputs it is glued from, which the glue carries over)."""
        tol = state.tol
        noise = [self.noise.get(n) for n in [name, *self.glue_sources(name)]]
        worst = max((nz.max_abs for nz in noise if nz is not None and math.isfinite(nz.max_abs)), default=0.0)
        if worst > 0:
            return Tolerance(max(tol.atol, 4 * worst), tol.rtol, tol.max_share)
        return tol

    def judge(self, state: CandidateState, name: str, d: TensorDiff):
        """`d` against the candidate's precision (compare/noise.py): INT8 at its calibrated amax where known (a
        user's Q/DQ file: its own scales, as the built-in's quantizer gives them), or the reference's |x| max where
        this input reaches past it (a range calibrated to clip, ModelOpt's: what it clips is no rounding the budget
        holds; the calibration's fit says it, `segment_int8.calibration_fit`); the reference's own noise (and that of
        the rows a glued input comes from) as the floor."""
        from cp_debug.compare import noise as noise_model

        floor = max((nz.rel_rmse for nz in (self.noise.get(n) for n in [name, *self.glue_sources(name)])
                     if nz is not None and math.isfinite(nz.rel_rmse)), default=0.0)
        amax = None
        if state.judged_at == "int8" and state.int8_amax and name in self.probes:
            pm = self.stage_of(state.label, self.probes[name].stage).probe_map()
            tensor = pm.tensors.get(name, name) if pm is not None else name
            amax = state.int8_amax.get(tensor)
            if amax is not None and math.isfinite(d.ref_absmax) and d.ref_absmax > amax:
                amax = d.ref_absmax
        return noise_model.judge(d, state.judged_at, amax, floor, state.judged_unit)

    def glue_sources(self, name: str) -> list[str]:
        """The rows a glued input row is computed from: the earlier stages' output rows (or the module rows that
        stand for them) that the subject's glue reads. Empty for any other probe."""
        p = self.probes.get(name)
        if p is None or p.kind != "input" or p.stage == 0:
            return []
        rows = []
        for out in self.subject.glue_sources(p.stage, name):
            st = next((s for s in self.subject.stages[:p.stage] if out in s.output_names), None)
            row = out if out in self.probes or st is None else st.output_aliases.get(out, out)
            if row in self.probes:
                rows.append(row)
        return rows

    def calib(self, index: int) -> list[dict]:
        if index == 0 and self.opts.calib_feeds:
            return list(self.opts.calib_feeds)
        return [self.ref_feeds[index]]

    def known_tensors(self, i: int, stage: Stage | None = None) -> dict[str, str]:
        """ONNX tensors of stage i whose reference value is known: tensor -> store key (or feed name). With `stage`
        (a SPEC@DIR view), the tensors of that stage's graph."""
        st = stage if stage is not None else self.subject.stages[i]
        pm = st.probe_map()
        known = {n: n for n in st.input_names}
        for name, ps in self.probes.items():
            if ps.stage == i and ps.kind == "module" and name in pm.tensors and name in self.store:
                known[pm.tensors[name]] = name
        return known

    def known_value(self, i: int, key: str):
        if key in self.store:
            return self.store.get(key)
        return self.ref_feeds[i][key]

    def ort_kwargs(self, spec: BackendSpec, model=None) -> dict:
        """The precision transform's node lists for `spec`: those of `model`'s nodes (a stage's graph or a
        segment of it); every listed node when no model is given (lockstep filters per segment itself)."""
        pick = (lambda nodes: _in_graph(nodes, model)) if model is not None else list
        kw: dict = {}
        if spec.precision in ("int8", "fp8", "nvfp4", "mxfp8"):  # --exclude-int8: out of the run's quantisation
            kw["exclude_int8_nodes"] = pick(self.opts.exclude_int8)
        if spec.precision in ("fp16", "bf16"):
            kw["keep_fp32_nodes"] = pick(self.opts.keep_fp32)
        return kw


def unmapped_note(st: Stage, name: str, spec: BackendSpec) -> str | None:
    pm = st.probe_map() if spec.runs_onnx else None
    if pm is not None and name in pm.unmapped:
        return pm.unmapped[name]
    return "no value for this probe"


def store_keys(store: TensorStore, name: str):
    """The keys of a torch probe's captured inputs (`name:in0`, `name:in1`, …) present in the store."""
    k = 0
    while f"{name}:in{k}" in store:
        yield f"{name}:in{k}"
        k += 1


def _in_graph(nodes: tuple[str, ...], model) -> list[str]:
    """The named nodes that `model` (a stage's graph, or a segment cut from it) holds."""
    present = {n.name for n in model.graph.node}
    return [n for n in nodes if n in present]

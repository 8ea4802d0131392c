"""Gates a CI sets on a run's figures (`eval --max-map-drop/--max-nds-drop/--min-match`, `replay --min-match`): each
checked figure is a typed `GateCheck`; a broken one makes the command exit `ExitCode.DIVERGED` with one line naming
the gate and both figures. No gate given: nothing is checked and the exit code is the command's own.

The match rate of a candidate's boxes against the reference's is matched / the larger box count (1 when both have
none), so lost and added boxes both lower it, as replay's agreement counts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from cp_debug.errors import BadInputError, ExitCode

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.eval.report import EvalReport


@dataclass(frozen=True)
class GateCheck:
    """One figure against the limit of `option`: `at_most` figures (a drop) must not exceed it, the others (a match
    rate) must reach it. A figure that is not a number (mAP without ground truth) breaks the gate."""

    option: str  # e.g. "--max-map-drop"
    limit: float
    value: float
    what: str  # the figure in words, e.g. "ort-cpu-fp16's mAP drop vs torch (0.9010 -> 0.8780)"
    at_most: bool
    fmt: str = ".4f"  # how the figure is written (".0f" for counts)
    subject: str = ""  # whose figure (a budget's: the candidate), for the JUnit case's name

    @property
    def broken(self) -> bool:
        if not math.isfinite(self.value):
            return True
        return self.value > self.limit if self.at_most else self.value < self.limit

    def text(self) -> str:
        side = "above" if self.at_most else "below"
        state = f"{side} the limit" if self.broken else "within it"
        return f"{self.option} {self.limit:g}: {self.what} is {self.value:{self.fmt}}, {state}"

    def to_json(self) -> dict:
        return {"option": self.option, "limit": self.limit,
                "value": self.value if math.isfinite(self.value) else None, "what": self.what,
                "broken": self.broken}

    def junit_case(self, classname: str):
        """This check as a JUnit test case (`report.junit`): failed when broken, both figures in the message."""
        from cp_debug.report.junit import TestCase

        name = f"{self.option} [{self.subject}]" if self.subject else self.option
        return TestCase(name=name, classname=classname, failure=self.text() if self.broken else None,
                        failure_type="cpdebug.budget", properties={"limit": self.limit, "value": self.value,
                                                                   "what": self.what})


def match_rate(matched: int, reference: int, candidate: int) -> float:
    """Matched boxes over the larger of the two box counts (1.0 when neither side has a box)."""
    n = max(reference, candidate)
    return 1.0 if n == 0 else matched / n


def check_limits(**limits: float | None) -> None:
    """One BadInputError for a gate limit that cannot hold (a negative drop, a match rate outside 0..1)."""
    for name, value in limits.items():
        if value is None:
            continue
        option = "--" + name.replace("_", "-")
        if not math.isfinite(value):
            raise BadInputError(f"{option} {value}: give a number")
        if name.startswith("min_") and not 0.0 <= value <= 1.0:
            raise BadInputError(f"{option} {value:g}: a match rate lies in 0..1 (e.g. 0.95 for 95% of the boxes)")
        if name.startswith("max_") and value < 0:
            raise BadInputError(f"{option} {value:g}: a drop limit is not negative (0 allows no drop)")


def eval_gates(report: "EvalReport", *, max_map_drop: float | None = None, max_nds_drop: float | None = None,
               min_match: float | None = None) -> tuple[GateCheck, ...]:
    """The gates given, checked for every candidate of an eval against its reference (none given: ())."""
    ref = report.reference
    out: list[GateCheck] = []
    ref_m = report.metrics[ref]
    for cand in report.backends[1:]:
        m = report.metrics.get(cand)
        if m is not None and max_map_drop is not None:
            out.append(GateCheck("--max-map-drop", max_map_drop, ref_m.mean_ap - m.mean_ap,
                                 f"{cand}'s mAP drop vs {ref} ({ref_m.mean_ap:.4f} -> {m.mean_ap:.4f})", True))
        if m is not None and max_nds_drop is not None:
            out.append(GateCheck("--max-nds-drop", max_nds_drop, ref_m.nds - m.nds,
                                 f"{cand}'s NDS drop vs {ref} ({ref_m.nds:.4f} -> {m.nds:.4f})", True))
        diff = report.diffs.get(cand)
        if diff is not None and min_match is not None:
            t = diff.total
            out.append(GateCheck("--min-match", min_match, match_rate(t.matched, t.reference, t.candidate),
                                 f"{cand}'s box match rate vs {ref} ({t.matched} matched of {t.reference} reference "
                                 f"and {t.candidate} candidate boxes, within {diff.max_dist:g} m)", False))
    return tuple(out)


def gate_exit(checks: Sequence[GateCheck]) -> ExitCode | None:
    """`ExitCode.DIVERGED` when a gate is broken, else None (the command's own exit code stands)."""
    return ExitCode.DIVERGED if any(c.broken for c in checks) else None


def broken_line(checks: Iterable[GateCheck], what: str = "gate") -> str | None:
    """The one line naming every broken gate (or budget limit) with both figures, or None when none is broken."""
    broken = [c.text() for c in checks if c.broken]
    return (f"{what} broken: " + "; ".join(broken)) if broken else None


# -- the budget a team sets (`--budget FILE.yaml` on bisect, sweep, eval, fix --check) -----------------------------
# Each key, what it limits, and the commands whose run measures it. A budget key a run cannot measure is refused
# before the run (one line, exit 2); a budget given decides the exit code: 1 when one is broken, 0 when all hold.
BUDGET_KEYS: dict[str, str] = {
    "max_map_drop": "largest mAP drop vs the reference (nuScenes mAP, 0..1)",
    "max_nds_drop": "largest NDS drop vs the reference",
    "max_ap_drop_per_class": "largest AP drop of each class (a number for every class, or {class: number})",
    "max_ap_drop_per_range": "largest AP drop of each class in each range bin (a number, or {bin: number}, bins "
                             "as the sweep names them: 0-50m, 50-90m, 90m+)",
    "min_match_rate": "smallest share (0..1) of boxes matched to the reference's (over the larger box count)",
    "max_p95_centre_shift": "largest 95th percentile of matched boxes' BEV centre shift, metres",
    "max_p95_yaw_change": "largest 95th percentile of matched boxes' yaw change, radians",
    "max_head_error": "largest error of each head output over the frames: {quantile: 0.95, limits: number or "
                      "{heatmap: .., reg: ..}} (rel. RMSE vs the reference)",
    "no_frame_diverged": "true: no frame (scan, input) may diverge (a local fault, NaN/Inf, a frame that fails)",
    "max_metric_drop": "largest drop of the task metric of `eval --torch|--onnx --metric` (top1, accuracy, cosine, "
                       "…) below the reference's, the mean over the samples",
}
MEASURED_BY: dict[str, frozenset[str]] = {
    "sweep": frozenset(BUDGET_KEYS) - {"max_metric_drop"},
    "eval": frozenset({"max_map_drop", "max_nds_drop", "max_ap_drop_per_class", "min_match_rate",
                       "max_p95_centre_shift", "max_p95_yaw_change", "no_frame_diverged"}),
    "bisect": frozenset({"max_head_error", "min_match_rate", "no_frame_diverged"}),
    "fix --check": frozenset({"max_map_drop", "max_nds_drop", "no_frame_diverged"}),
    "eval --metric": frozenset({"max_metric_drop", "no_frame_diverged"}),
}


@dataclass(frozen=True)
class HeadErrorBudget:
    """`max_head_error`: the `quantile` over frames of each head output's rel. RMSE must not exceed its limit."""

    limits: float | Mapping[str, float]  # one limit for every head output, or per output name
    quantile: float = 0.95
    heads: tuple[str, ...] = ()  # the head outputs it limits (the recipe's `Recipe.head_outputs`, handed down)

    def limit(self, head: str) -> float | None:
        return self.limits if isinstance(self.limits, float) else self.limits.get(head)


@dataclass(frozen=True)
class Budget:
    """The limits of one budget file (None / False: not set)."""

    path: str
    max_map_drop: float | None = None
    max_nds_drop: float | None = None
    max_ap_drop_per_class: float | Mapping[str, float] | None = None
    max_ap_drop_per_range: float | Mapping[str, float] | None = None
    min_match_rate: float | None = None
    max_p95_centre_shift: float | None = None
    max_p95_yaw_change: float | None = None
    max_head_error: HeadErrorBudget | None = None
    no_frame_diverged: bool = False
    max_metric_drop: float | None = None

    @property
    def heads(self) -> tuple[str, ...]:
        """The head outputs its `max_head_error` limits (none: no such limit)."""
        return self.max_head_error.heads if self.max_head_error is not None else ()

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys this budget sets, in file order of BUDGET_KEYS."""
        return tuple(k for k in BUDGET_KEYS if getattr(self, k) not in (None, False))

    def check_measurable(self, command: str) -> None:
        """One BadInputError naming the keys `command`'s run cannot measure (said before the run)."""
        cannot = [k for k in self.keys if k not in MEASURED_BY[command]]
        if cannot:
            can = ", ".join(k for k in BUDGET_KEYS if k in MEASURED_BY[command])
            raise BadInputError(f"--budget {self.path}: {command} cannot measure {', '.join(cannot)}; its runs "
                                f"measure {can} (`cpdebug sweep` measures every key)")

    def to_json(self) -> dict:
        out: dict = {"path": self.path}
        for k in self.keys:
            v = getattr(self, k)
            out[k] = {"quantile": v.quantile, "limits": v.limits if isinstance(v.limits, float) else dict(v.limits)} \
                if isinstance(v, HeadErrorBudget) else (dict(v) if isinstance(v, Mapping) else v)
        return out


def read_budget(path: str | Path, heads: tuple[str, ...] = ()) -> Budget:
    """Read a budget file (YAML, or JSON, which YAML reads too): one BadInputError line for a file that cannot be
    used, naming unknown keys and bad values. `heads`: the head outputs `max_head_error` names (the caller's recipe's
    `Recipe.head_outputs`)."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"--budget {p}: no such file (a YAML file of limits, e.g. `max_map_drop: 0.01`)")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        import json

        try:
            doc = json.loads(text)
        except ValueError as err:
            raise BadInputError(f"--budget {p}: not JSON ({err})") from None
    else:
        from cp_debug.imports import optional

        yaml = optional("yaml", f"--budget {p}: reading YAML needs PyYAML: pip install 'cp-debug[ci]' (or give the "
                                "budget as .json)", label="PyYAML", error=BadInputError)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise BadInputError(f"--budget {p}: not YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not doc:
        raise BadInputError(f"--budget {p}: give a mapping of limits, e.g. `max_map_drop: 0.01` (keys: "
                            f"{', '.join(BUDGET_KEYS)})")
    unknown = [str(k) for k in doc if k not in BUDGET_KEYS]
    if unknown:
        raise BadInputError(f"--budget {p}: unknown key(s) {', '.join(unknown)}; the keys are {', '.join(BUDGET_KEYS)}")
    values = {k: _budget_value(p, k, v, heads) for k, v in doc.items()}
    return Budget(str(p), **values)


def _budget_value(path: Path, key: str, value, heads: tuple[str, ...]):
    where = f"--budget {path}: {key}"
    if key == "no_frame_diverged":
        if not isinstance(value, bool):
            raise BadInputError(f"{where} is true or false, not {value!r}")
        return value
    if key == "max_head_error":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return HeadErrorBudget(_limit(where, key, value), heads=heads)
        if not isinstance(value, dict) or "limits" not in value or set(value) - {"limits", "quantile"}:
            raise BadInputError(f"{where}: give {{quantile: 0.95, limits: 0.05}} or limits per head output "
                                "({heatmap: .., reg: ..})")
        q = value.get("quantile", 0.95)
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 1.0:
            raise BadInputError(f"{where}: quantile {q!r} lies in 0..1 (0.95: the 95th percentile over frames)")
        limits = value["limits"]
        if isinstance(limits, dict):
            bad = [str(h) for h in limits if h not in heads]
            if bad:
                raise BadInputError(f"{where}: unknown head output(s) {', '.join(bad)}; the outputs are "
                                    f"{', '.join(heads)}")
            return HeadErrorBudget({str(h): _limit(where, "max_", v) for h, v in limits.items()}, float(q), heads)
        return HeadErrorBudget(_limit(where, "max_", limits), float(q), heads)
    if isinstance(value, dict) and key in ("max_ap_drop_per_class", "max_ap_drop_per_range"):
        if not value:
            raise BadInputError(f"{where}: an empty mapping sets no limit; give a number or {{name: number}}")
        return {str(k): _limit(f"{where}.{k}", key, v) for k, v in value.items()}
    return _limit(where, key, value)


def _limit(where: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInputError(f"{where}: give a number, not {value!r}")
    if key.startswith("min_") and not 0.0 <= value <= 1.0:
        raise BadInputError(f"{where} {value:g}: a match rate lies in 0..1 (e.g. 0.95 for 95% of the boxes)")
    if key.startswith("max_") and value < 0:
        raise BadInputError(f"{where} {value:g}: a limit is not negative (0 allows no change)")
    return float(value)


@dataclass(frozen=True)
class CandidateFigures:
    """What one run measured of one candidate against the reference, for a budget (None / empty: not measured).
    Each command fills what it has (`eval_figures`, `bisect_figures`, sweep's and fix --check's own)."""

    candidate: str
    reference: str
    map: tuple[float, float] | None = None  # (reference, candidate)
    nds: tuple[float, float] | None = None
    ap_per_class: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    ap_per_range: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (class, bin)
    match: tuple[int, int, int] | None = None  # matched, reference boxes, candidate boxes
    centre_shifts: tuple[float, ...] | None = None  # every matched box's centre shift, metres
    yaw_changes: tuple[float, ...] | None = None  # every matched box's |yaw change|, radians
    head_errors: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # head output -> rel. RMSE per frame
    frames: int = 0
    diverged_frames: tuple[str, ...] = ()  # tokens (or why) of the frames that diverged or failed
    metric: tuple[float, float] | None = None  # a generic model's task metric: (reference, candidate)
    metric_name: str = ""


def budget_checks(budget: Budget, figures: Sequence[CandidateFigures]) -> tuple[GateCheck, ...]:
    """Every limit of `budget` checked on every candidate's figures (a figure the run lacks breaks its limit)."""
    out: list[GateCheck] = []
    for f in figures:
        out += [replace(c, subject=f.candidate) for c in _candidate_checks(budget, f)]
    return tuple(out)


def _candidate_checks(b: Budget, f: CandidateFigures) -> list[GateCheck]:
    vs = f"{f.candidate} vs {f.reference}"
    out: list[GateCheck] = []
    for key, pair, name in (("max_map_drop", f.map, "mAP"), ("max_nds_drop", f.nds, "NDS")):
        limit = getattr(b, key)
        if limit is not None:
            drop = pair[0] - pair[1] if pair else math.nan
            seen = f"{pair[0]:.4f} -> {pair[1]:.4f}" if pair else "not measured: no ground truth"
            out.append(GateCheck(key, limit, drop, f"{vs}: {name} drop ({seen})", True))
    if b.max_ap_drop_per_class is not None:
        out += _ap_checks("max_ap_drop_per_class", b.max_ap_drop_per_class, f.ap_per_class, vs)
    if b.max_ap_drop_per_range is not None:
        out += _ap_checks("max_ap_drop_per_range", b.max_ap_drop_per_range, f.ap_per_range, vs)
    if b.min_match_rate is not None:
        m = f.match
        seen = f"{m[0]} matched of {m[1]} reference and {m[2]} candidate boxes" if m else "no boxes compared"
        out.append(GateCheck("min_match_rate", b.min_match_rate, match_rate(*m) if m else math.nan,
                             f"{vs}: box match rate ({seen})", False))
    for key, values, name, unit in (("max_p95_centre_shift", f.centre_shifts, "centre shift", "m"),
                                    ("max_p95_yaw_change", f.yaw_changes, "yaw change", "rad")):
        limit = getattr(b, key)
        if limit is not None:
            p95 = _quantile(values, 0.95) if values else (0.0 if values is not None else math.nan)
            out.append(GateCheck(key, limit, p95, f"{vs}: P95 {name} of {len(values or ())} matched boxes ({unit})",
                                 True, ".4g"))
    if b.max_head_error is not None:
        out += _head_checks(b.max_head_error, f, vs)
    if b.max_metric_drop is not None:
        m = f.metric
        seen = f"{m[0]:.4g} -> {m[1]:.4g}" if m else "not measured"
        out.append(GateCheck("max_metric_drop", b.max_metric_drop, m[0] - m[1] if m else math.nan,
                             f"{vs}: {f.metric_name or 'metric'} drop ({seen})", True, ".4g"))
    if b.no_frame_diverged:
        d = f.diverged_frames
        shown = (": " + ", ".join(d[:5]) + (" …" if len(d) > 5 else "")) if d else ""
        out.append(GateCheck("no_frame_diverged", 0, len(d), f"{vs}: frames diverged or failed of {f.frames}{shown}",
                             True, ".0f"))
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.quantile(np.asarray(values, np.float64), q))


def _ap_checks(key: str, limits: float | Mapping[str, float], table: Mapping, vs: str) -> list[GateCheck]:
    """AP drop per class (keys: class) or per class x range bin (keys: (class, bin)); a limit given per name (class
    or bin) that the run has no AP of breaks."""
    out = []
    for k, (ref, cand) in table.items():
        name = k if isinstance(k, str) else k[1]
        limit = limits.get(name) if isinstance(limits, Mapping) else limits
        if limit is None:
            continue
        label = k if isinstance(k, str) else f"{k[0]}@{k[1]}"
        out.append(GateCheck(f"{key}[{label}]", limit, ref - cand, f"{vs}: AP drop of {label} ({ref:.4f} -> "
                             f"{cand:.4f})", True))
    if isinstance(limits, Mapping):
        present = {k if isinstance(k, str) else k[1] for k in table}
        for name in sorted(set(limits) - present):
            out.append(GateCheck(f"{key}[{name}]", limits[name], math.nan,
                                 f"{vs}: AP of {name} (not measured: no ground truth of it)", True))
    return out


def _head_checks(h: HeadErrorBudget, f: CandidateFigures, vs: str) -> list[GateCheck]:
    out = []
    for head in h.heads:
        limit = h.limit(head)
        if limit is None:
            continue
        values = f.head_errors.get(head) or ()
        out.append(GateCheck(f"max_head_error[{head}]", limit, _quantile(values, h.quantile) if values else math.nan,
                             f"{vs}: {head}'s rel. RMSE, quantile {h.quantile:g} over {len(values)} frame(s)",
                             True, ".4g"))
    return out


def eval_figures(report: "EvalReport") -> tuple[CandidateFigures, ...]:
    """What an eval measured per candidate: mAP/NDS and AP per class (the devkit), the box matching and its matched
    pairs' shifts, and whether its verdict is diverged."""
    from cp_debug.compare.noise import Outcome

    ref = report.reference
    ref_m = report.metrics.get(ref)
    out = []
    for cand in report.backends[1:]:
        m, diff, v = report.metrics.get(cand), report.diffs.get(cand), report.verdicts.get(cand)
        per_class = {}
        if m is not None and ref_m is not None:
            ref_aps = {c.name: c.ap for c in ref_m.per_class if c.num_gt and math.isfinite(c.ap)}
            per_class = {c.name: (ref_aps[c.name], c.ap) for c in m.per_class if c.name in ref_aps}
        t = diff.total if diff is not None else None
        out.append(CandidateFigures(
            cand, ref, map=(ref_m.mean_ap, m.mean_ap) if m is not None and ref_m is not None else None,
            nds=(ref_m.nds, m.nds) if m is not None and ref_m is not None else None, ap_per_class=per_class,
            match=(t.matched, t.reference, t.candidate) if t is not None else None,
            centre_shifts=tuple(diff.pairs.centre_shift.tolist()) if diff is not None else None,
            yaw_changes=tuple(diff.pairs.yaw_change.tolist()) if diff is not None else None,
            frames=len(report.ground_truth) or len(next(iter(report.detections.values()), {})),
            diverged_frames=(f"{cand}: {v.reason}",) if v is not None and v.outcome is Outcome.DIVERGED else ()))
    return tuple(out)


def bisect_figures(report, names: tuple[str, ...] = ()) -> tuple[CandidateFigures, ...]:
    """What a bisect measured per candidate on its one input (a `bisect.result.BisectReport`): each head output's
    rel. RMSE (the probe on the graph output of that name among `names`, the recipe's head outputs), the box matching
    of its detection verdict, and whether the candidate diverged (its outcome, or a run that failed)."""
    from cp_debug.compare.noise import Outcome

    heads = {p.name: p.onnx_tensor for p in report.probes if p.onnx_tensor in names}
    out = []
    for c in report.candidates:
        errors = {heads[r.probe]: (r.diff.rel_rmse,) for r in c.results if r.probe in heads and r.diff is not None}
        d = c.detections or {}
        match = (d["matched"], d["reference_boxes"], d["candidate_boxes"]) if "matched" in d else None
        diverged = c.error is not None or c.outcome is Outcome.DIVERGED or (c.outcome is None and c.diverged)
        why = c.error or c.outcome_reason or (f"first divergent {c.first_divergent}" if c.first_divergent else "")
        out.append(CandidateFigures(c.label, report.reference, match=match, head_errors=errors, frames=1,
                                    diverged_frames=(f"the input ({why})",) if diverged else ()))
    return tuple(out)


def budget_exit(checks: Sequence[GateCheck]) -> ExitCode:
    """A budget decides the exit code: `ExitCode.DIVERGED` when a limit is broken, else `ExitCode.OK`."""
    return gate_exit(checks) or ExitCode.OK


def budget_doc(budget: Budget, checks: Sequence[GateCheck]) -> dict:
    """The JSON of a budget's verdict (a command's JSON `budget` key): the limits, every check, whether all hold."""
    return {**budget.to_json(), "holds": not any(c.broken for c in checks),
            "checks": [{**c.to_json(), "candidate": c.subject} for c in checks]}


def samples_figures(report) -> list[CandidateFigures]:
    """What `eval --torch|--onnx --metric` (`eval.samples.SamplesEval`) measured of each candidate, for a budget."""
    failed = tuple(s for s, _ in report.failed)
    return [CandidateFigures(c.label, report.reference, frames=report.samples + len(failed),
                             diverged_frames=tuple(s for s, o in c.outcomes.items() if o == "diverged") + failed,
                             metric=(report.reference_metric.mean, c.metric.mean), metric_name=report.metric)
            for c in report.candidates]

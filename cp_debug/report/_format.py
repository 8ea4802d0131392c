"""What every report view shares: compact numbers, rows in display order, one verdict per candidate.

The terminal table, the HTML page and the summary line all read a BisectReport through these helpers, so
they say the same thing in the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cp_debug.bisect.result import BisectReport, CandidateResult, Probe, ProbeResult
from cp_debug.compare.diff import BROKEN

FIRST_DIVERGENT = "◀ first divergent"
ROOT_CAUSE = "★ root cause"
TIPS = "≈ tips the tie"  # a layer that alone brings back a decision at a near tie others tip too: no single root
NOT_OK = ("diverged", *BROKEN)


def as_float(x) -> float | None:
    """A metric as a float: None stays None, the JSON strings "nan"/"inf"/"-inf" become floats."""
    if x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt_num(x) -> str:
    """3 significant digits; scientific (1.23e-5) when small or large; "—" for no value."""
    v = as_float(x)
    special = _special(v)
    if special is not None:
        return special
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e4:
        s = f"{v:.3g}"
        return f"{v:.0f}" if "e" in s else s
    mant, exp = f"{v:.2e}".split("e")
    return f"{mant}e{int(exp)}"


def fmt_db(x) -> str:
    v = as_float(x)
    special = _special(v)
    return special if special is not None else f"{v:.1f}"


def _special(v: float | None) -> str | None:
    """How "no value", NaN and ±inf read in tables; None for an ordinary number."""
    if v is None:
        return "—"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


@dataclass(frozen=True)
class Row:
    """One probe of one candidate, as the views show it."""

    index: int | None  # topological index of the probe (None: a result without a known probe)
    probe: str
    depth: int
    op_type: str | None
    result: ProbeResult
    first_divergent: bool
    root_cause: bool
    on_path: bool
    tips: bool = False  # one of the layers that each tip a near tie (`RootCause.tipped_by`): no root marked then

    @property
    def marker(self) -> str:
        marks = []
        if self.first_divergent:
            marks.append(FIRST_DIVERGENT)
        if self.root_cause:
            marks.append(ROOT_CAUSE)
        if self.tips:
            marks.append(TIPS)
        return "  ".join(marks)


def rows(report: BisectReport, cand: CandidateResult) -> list[Row]:
    """The candidate's results in tree order: each probe followed by the finer probes that refine it."""
    probes: dict[str, Probe] = {p.name: p for p in report.probes}
    by_name: dict[str, ProbeResult] = {}
    for r in cand.results:
        by_name.setdefault(r.probe, r)
    shown = set(by_name)

    def key(name: str) -> tuple:
        p = probes.get(name)
        return (p is None, p.index if p else 0)

    children: dict[str | None, list[str]] = {}
    for name in by_name:
        p = probes.get(name)
        parent = p.parent if p is not None and p.parent in shown and p.parent != name else None
        children.setdefault(parent, []).append(name)
    for names in children.values():
        names.sort(key=key)

    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        order.append(name)
        for child in children.get(name, []):
            visit(child)

    for name in children.get(None, []):
        visit(name)
    for name in by_name:  # anything left over (a parent cycle) still shows, never silently dropped
        visit(name)

    tips = set(cand.root_cause.tipped_by) if cand.root_cause else set()
    rc = cand.root_cause.probe if cand.root_cause and not tips else None
    path = set(cand.path)
    out = []
    for name in order:
        p = probes.get(name)
        out.append(Row(p.index if p else None, name, p.depth if p else 0, p.op_type if p else None, by_name[name],
                       name == cand.first_divergent, name == rc, name in path, name in tips))
    return out


def topo_rows(report: BisectReport, cand: CandidateResult) -> list[Row]:
    """The candidate's results in topological order (probe index), for plots along the model."""
    rs = rows(report, cand)
    return sorted(rs, key=lambda r: (r.index is None, r.index if r.index is not None else 0))


def verdict(cand: CandidateResult, hint: bool = True) -> tuple[str, str]:
    """(kind, text): kind is "ok", "diverged", "error" or "unknown"; text is one line for people.

    hint=False leaves the root cause's hint out (for views that show it on its own line).
    """
    if cand.error:
        return "error", f"could not run: {cand.error}"
    missing = sum(1 for r in cand.results if r.status == "missing")
    tail = f" ({missing} probe{'s' if missing != 1 else ''} missing)" if missing else ""
    judged = cand.outcome is not None and cand.outcome_reason and "fixed mode" not in cand.outcome_reason
    if cand.outcome is not None and cand.outcome.value == "not_run_as_asked":
        return "error", f"not run as asked: {cand.outcome_reason}{tail}"
    if cand.outcome is not None and cand.outcome.value == "inconclusive":  # the reference's own runs differ
        return "unknown", f"inconclusive: {cand.outcome_reason}{tail}"
    if judged and cand.outcome.value == "within_precision":  # the noise model's verdict (compare/noise.py)
        return "ok", f"within precision: {cand.outcome_reason}{tail}"
    if cand.first_divergent:
        text = f"diverged at {cand.first_divergent}"
        if judged:
            text = f"{cand.outcome.words}: beyond {cand.judged_at} from {cand.first_divergent}"
        if cand.root_cause:
            same = (cand.root_cause.probe == cand.first_divergent and not cand.root_cause.nodes
                    and not cand.root_cause.module and not cand.root_cause.tipped_by and not cand.root_cause.same_fault)
            text += " (the root cause)" if same else f", {cand.root_cause.named}"
            if cand.root_cause.hint and hint:
                text += f": {cand.root_cause.hint}"
        if cand.outputs_within_tolerance:
            text += " (final outputs still within tolerance)"
        if judged:
            text += f" — {cand.outcome_reason}"
        return "diverged", text + tail
    bad = next((r for r in cand.results if r.status in NOT_OK), None)
    if bad is not None:
        return "diverged", f"{bad.status.replace('_', ' ')} at {bad.probe}{tail}"
    if cand.outputs_within_tolerance is False:
        return "diverged", f"outputs beyond tolerance, no probe diverged{tail}"
    if not cand.results:
        return "unknown", "no probes compared"
    if judged:  # every probe within the precision, but the boxes changed beyond it
        return "diverged", f"{cand.outcome.words}: {cand.outcome_reason}{_moved_by(cand, hint)}{tail}"
    return "ok", f"within tolerance{tail}"


def _moved_by(cand: CandidateResult, hint: bool) -> str:
    """"; root cause X: hint" where no probe diverged and the intervention found the layer that moves the decision
    (a user's langid file: its Add left out of INT8 brings the language back), "; no single root cause: …" where
    several layers each tip a near tie (`RootCause.named`), else ""."""
    if not cand.root_cause:
        return ""
    said = f": {cand.root_cause.hint}" if cand.root_cause.hint and hint else ""
    return f"; {cand.root_cause.named}{said}"


def candidate_title(cand: CandidateResult) -> str:
    """The candidate's name in a summary: its label, with the spec it resolved to where that says more; a deployed
    file holding another precision than its spec's (`ort@DIR` over an FP16 or FP8 file) says what it holds."""
    if cand.spec in (None, "", cand.label):
        return cand.label
    held = cand.judged_at if cand.judged_at and f"-{cand.judged_at}" not in cand.spec and "@" in cand.spec else None
    return f"{cand.label} ({cand.spec}{f', the file holds {held}' if held else ''})"


def precision_line(cand: CandidateResult) -> str | None:
    """"requested fp16, ran fp32: note; note" or None."""
    p = cand.precision
    if not p:
        return None
    req, eff = p.get("requested"), p.get("effective")
    parts = []
    if req or eff:
        if req and eff and req != eff:
            parts.append(f"requested {req}, ran {eff}")
        else:
            parts.append(f"ran {eff or req}")
    dep = ((cand.deployed or {}).get("precision") or {}).get("effective")
    if parts and dep and dep != (eff or req):  # issue 117: the verdict said "ran int8" (as deployed) and this
        parts[0] += f" with its probes exposed (the graph as deployed ran {dep})"  # "ran fp32" (probed), unsaid
    notes = [str(n) for n in (p.get("notes") or ())]
    text = ", ".join(parts)
    if notes:
        text = f"{text}: {'; '.join(notes)}" if text else "; ".join(notes)
    return text or None


def tolerance_for(report: BisectReport, label: str) -> dict | None:
    """The tolerance the candidate was judged by, from settings["tolerance"] (per label, or one for all)."""
    s = report.settings or {}
    for key in ("tolerance", "tolerances"):
        tol = s.get(key)
        if isinstance(tol, dict) and isinstance(tol.get(label), dict):
            return tol[label]
        if isinstance(tol, dict) and ("atol" in tol or "rtol" in tol):
            return tol
    return None


def _int8_cpu_note(report: BisectReport, label: str) -> str:
    """"; calibrated on 8 samples" where the candidate quantized its graph here, and "; INT8 kernels on avx2 (…)" where
    its ONNX Runtime sessions recorded their CPU's INT8 path."""
    stages = [s for s in (((report.settings or {}).get("backends") or {}).get(label) or {}).values()
              if isinstance(s, dict)]
    counts = sorted({n for s in stages if (n := (s.get("precision_transform") or {}).get("calibration_feeds"))})
    said = f"; calibrated on {'/'.join(map(str, counts))} sample{'s' if counts[-1] > 1 else ''}" if counts else ""
    paths = sorted({s["cpu_int8_path"] for s in stages if s.get("cpu_int8_path")})
    if not paths:
        return said
    return (f"{said}; INT8 kernels on {'/'.join(paths)}: another x86 CPU may round an element one INT8 step apart "
            f"(2 of the 8 half-steps; the settings' cpu_int8_bound says why)")


def tolerance_line(report: BisectReport, cand: CandidateResult) -> str | None:
    """What the candidate was judged by, in one line: the precision's expected error (`--tolerance-mode model`, the
    default; compare/noise.py) or the element-wise tolerance (fixed mode, and reports recorded before the model)."""
    tol = tolerance_for(report, cand.label)
    elementwise = ", ".join(f"{k} {fmt_num(v)}" for k, v in tol.items()) if tol else None
    if (report.settings or {}).get("tolerance_mode") == "model" and cand.judged_at:
        from cp_debug.compare.noise import budget

        line = ("judged at int8: each probe against 8 half-steps of its amax/127 (relative RMS error)"
                + _int8_cpu_note(report, cand.label)
                if cand.judged_at == "int8" else
                f"judged at {cand.judged_at}{_emulated(cand.judged_at)}: a healthy {cand.judged_at} run reaches a "
                f"relative RMS error of {fmt_num(budget(cand.judged_at))} (its expected rounding)")
        return line + (f"; element-wise {elementwise} with --tolerance-mode fixed" if elementwise else "")
    return f"tolerance: {elementwise}" if elementwise else None


def _emulated(precision: str) -> str:
    """" (emulated — not run on hardware)" for a precision no runtime here runs (NVFP4, MXFP8), else ""."""
    from cp_debug.backends.spec import EMULATED_PRECISIONS
    from cp_debug.precision.block_quant import EMULATED

    return f" ({EMULATED})" if precision in EMULATED_PRECISIONS else ""


def model_title(report: BisectReport) -> str:
    """A short name for the model: its name, recipe (and preset), class or file."""
    return report.facts.title if report.facts is not None else "model"


def summary_line(report: BisectReport) -> str:
    parts = [f"{c.label}: {verdict(c)[1]}" for c in report.candidates]
    return f"vs {report.reference} — " + (" | ".join(parts) if parts else "no candidates")


def third_party_line(caught: list[dict], verbose: bool = False, where: str | None = "the report's warnings"
                     ) -> str | None:
    """"12 third-party warnings (3 distinct) in the report's warnings (-v shows them as they come)", or None.
    `where`: where they were kept (None: nowhere but this count)."""
    if not caught:
        return None
    n = sum(int(w.get("count", 1)) for w in caught)
    distinct = f" ({len(caught)} distinct)" if len(caught) != n else ""
    kept = f" in {where}" if where else " kept off the terminal"
    tail = "" if verbose else " (-v shows them as they come)"
    return f"{n} third-party warning{'s' if n != 1 else ''}{distinct}{kept}{tail}"

"""The evaluation report: metrics per backend, detection diffs, diagnoses; JSON and rich tables.

The JSON holds `metrics[backend]`, `diffs[candidate]`, `diagnoses[candidate]`, `verdicts[candidate]` (the noise
model's outcome, `verdict.py`) with the worst as `outcome`, and the boxes themselves as
`detections[backend][sample_token]` and `ground_truth[sample_token]` in the nuScenes results format, so the
metrics can be recomputed with the devkit from the file alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from cp_debug.eval.boxes import SampleBoxes
from cp_debug.eval.detection_diff import CandidateDiff
from cp_debug.eval.devkit import DetectionEvaluation
from cp_debug.eval.diagnose import Diagnosis
from cp_debug.eval.results_format import boxes_to_records
from cp_debug.eval.verdict import CandidateVerdict


@dataclass(frozen=True)
class EvalReport:
    preset: str
    weights: str
    class_names: tuple[str, ...]
    reference: str
    backends: tuple[str, ...]  # reference first
    metrics: dict[str, DetectionEvaluation]
    diffs: dict[str, CandidateDiff]  # by candidate
    diagnoses: dict[str, list[Diagnosis]]  # by candidate
    detections: dict[str, dict[str, SampleBoxes]]
    ground_truth: dict[str, SampleBoxes]
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    worst_points: object = field(default=None, repr=False, compare=False)  # (M, >=2) points of worst_scene()
    verdicts: dict[str, CandidateVerdict] = field(default_factory=dict)  # by candidate; none in fixed mode

    @property
    def outcome(self):
        """The worst candidate's outcome (`compare.noise.Outcome`); None without verdicts (fixed mode)."""
        from cp_debug.compare.noise import worst

        return worst(v.outcome for v in self.verdicts.values()) if self.verdicts else None

    def worst_scene(self) -> tuple[str, str] | None:
        """(candidate, token) of the scan where a candidate differs most from the reference."""
        best = None
        for cand, diff in self.diffs.items():
            for s in diff.worst_scenes(1):
                if best is None or s.rank_key > best[0]:
                    best = (s.rank_key, cand, s.token)
        return (best[1], best[2]) if best else None

    def to_json(self) -> dict:
        return {
            "preset": self.preset, "weights": self.weights, "class_names": list(self.class_names),
            "reference": self.reference, "backends": list(self.backends), "settings": self.settings,
            "metrics": {b: m.to_json() for b, m in self.metrics.items()},
            "seconds": self.seconds, "notes": {b: list(n) for b, n in self.notes.items()},
            "diffs": {c: d.to_json() for c, d in self.diffs.items()},
            "diagnoses": {c: [x.to_json() for x in ds] for c, ds in self.diagnoses.items()},
            "verdicts": {c: v.to_json() for c, v in self.verdicts.items()},
            "outcome": self.outcome.value if self.outcome is not None else None,
            "detections": {b: {t: boxes_to_records(t, sb, self.class_names) for t, sb in dets.items()}
                           for b, dets in self.detections.items()},
            "ground_truth": {t: boxes_to_records(t, sb, self.class_names) for t, sb in self.ground_truth.items()},
        }


def _f(v: float | None, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def metrics_table(report: EvalReport):
    from rich.table import Table

    t = Table(title=f"nuScenes detection metrics — {report.preset}, {report.weights}", title_justify="left")
    t.add_column("metric")
    for b in report.backends:
        t.add_column(b + (" (ref)" if b == report.reference else ""), justify="right")
    ms = [report.metrics[b] for b in report.backends]
    t.add_row("mAP", *[_f(m.mean_ap, 4) for m in ms], style="bold")
    t.add_row("NDS", *[_f(m.nds, 4) for m in ms], style="bold")
    for k in ("mATE", "mASE", "mAOE", "mAVE", "mAAE"):
        t.add_row(k, *[_f(m.tp_errors.get(k)) for m in ms])
    names = [c.name for c in ms[0].per_class]
    for name in names:
        t.add_row(f"AP {name}", *[_f({c.name: c.ap for c in m.per_class}.get(name)) for m in ms])
    t.add_row("boxes", *[str(sum(len(sb) for sb in report.detections[b].values())) for b in report.backends])
    if report.seconds:
        t.add_row("seconds", *[_f(report.seconds.get(b), 1) for b in report.backends], style="dim")
    return t


def diff_table(report: EvalReport, cand: str):
    from rich.table import Table

    d = report.diffs[cand]
    t = Table(title=f"{cand} vs {report.reference}: boxes matched by centre within {d.max_dist:g} m",
              title_justify="left")
    for col in ("class", "ref", "cand", "matched", "missing", "extra", "mean shift m", "max shift m",
                "mean Δscore", "max |Δscore|", "max Δyaw rad"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for c in (*d.per_class, d.total):
        t.add_row(c.name, str(c.reference), str(c.candidate), str(c.matched), str(c.missing), str(c.extra),
                  f"{c.mean_centre_shift:.3g}", f"{c.max_centre_shift:.3g}", f"{c.mean_score_change:+.3g}",
                  f"{c.max_abs_score_change:.3g}", f"{c.max_yaw_change:.3g}",
                  style="bold" if c.name == "all" else None)
    return t


def print_report(report: EvalReport, console) -> None:
    console.print(metrics_table(report))
    for cand in report.diffs:
        console.print(diff_table(report, cand))
        worst = report.diffs[cand].worst_scenes(3)
        if worst:
            console.print("  most different scans: " + "; ".join(
                f"{s.token} ({s.missing} missing, {s.extra} extra, max shift {s.max_centre_shift:.3g} m)"
                for s in worst), highlight=False, soft_wrap=True)
        for dg in report.diagnoses.get(cand, []):
            colour = "green" if dg.kind == "unchanged" else "yellow"
            console.print(f"  [{colour}]diagnosis[/{colour}] {dg.message}", highlight=False, soft_wrap=True)
        for n in report.notes.get(cand, ()):
            console.print(f"  [dim]note: {n}[/dim]", highlight=False, soft_wrap=True)
        v = report.verdicts.get(cand)
        if v is not None:
            colour = {"within_precision": "green", "degraded": "yellow",
                      "inconclusive": "yellow"}.get(v.outcome.value, "red")
            console.print(f"  [{colour}]verdict[/{colour}] {v.text()}", highlight=False, soft_wrap=True)
    if report.outcome is not None:
        console.print(f"eval: {report.outcome.words} (the worst candidate's verdict)", highlight=False)

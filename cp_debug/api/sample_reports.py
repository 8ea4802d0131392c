"""The library's reports of a sample run: a sweep's (`SweepReport`: sweep.json as typed views, the worst samples'
bisects as `Report`s) and an eval's (`EvalReport`): outcome, exit code, the rows as a DataFrame, the command's JSON,
rich and HTML views for a notebook."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from cp_debug.api.report import Report
    from cp_debug.compare.noise import Outcome


@dataclass
class SweepReport:
    """What `cp_debug.sweep(...)` returns: `doc` is sweep.json as the command writes it; `bisects` the worst samples'
    bisect reports (by sample name), `out` the sweep's folder where one was given."""

    doc: dict
    bisects: dict = field(default_factory=dict)
    out: Path | None = None

    @property
    def outcome(self) -> "Outcome":
        from cp_debug.compare.noise import Outcome

        return Outcome(self.doc["outcome"])

    @property
    def exit_code(self) -> int:
        return int(self.outcome.exit_code)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def worst(self) -> "Report | None":
        """The bisect of the worst sample, where one ran (its root cause, findings and probe rows)."""
        from cp_debug.api.report import Report
        from cp_debug.bisect.result import BisectReport

        for f in self.doc["frames"]:
            rep = self.bisects.get(f["token"])
            if isinstance(rep, BisectReport):
                return Report(rep)
        return None

    def frame(self) -> "pd.DataFrame":
        """One row per sample, worst first (sweep.json's `frames`)."""
        import pandas as pd

        keep = ("rank", "token", "status", "outcome", "outcome_reason", "candidate", "worst_probe", "worst_ratio",
                "root_cause", "hint", "bisected")
        return pd.DataFrame.from_records([{k: f.get(k) for k in keep} for f in self.doc["frames"]],
                                         columns=list(keep))

    to_frame = frame

    def to_json(self) -> dict:
        """sweep.json as written (strict JSON: `files.jsonable`)."""
        from cp_debug.files import jsonable

        return jsonable(self.doc)

    def summary(self) -> str:
        worst = self.worst
        return self.doc["verdict"] + (f"\nworst sample's bisect:\n{worst.summary()}" if worst is not None else "")

    def __str__(self) -> str:
        return self.summary()

    def __rich__(self):
        from cp_debug.api.shown import Shown

        return Shown(lambda console: _sweep_table(self.doc, console))

    def _repr_html_(self) -> str:
        return f"<p><b>{_escape(self.doc['verdict'])}</b></p>" + self.frame().to_html(index=False)


@dataclass
class EvalReport:
    """What `cp_debug.eval(...)` returns: `report` the typed eval (`eval.samples.SamplesEval`), `doc` its JSON as
    `cpdebug eval --torch|--onnx --json` writes it."""

    report: object
    doc: dict

    @property
    def outcome(self) -> "Outcome":
        return self.report.outcome

    @property
    def exit_code(self) -> int:
        return int(self.outcome.exit_code)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def frame(self) -> "pd.DataFrame":
        """One row per backend: the metric with its interval, the drop against the reference, the outcome."""
        import pandas as pd

        r = self.report
        rows = [{"backend": r.reference, "metric": r.reference_metric.text(), "drop": None, "outcome": "reference",
                 "changed": 0}]
        rows += [{"backend": c.label, "metric": c.metric.text(), "drop": c.drop.text(), "outcome": c.outcome.value,
                  "changed": len(c.changed)} for c in r.candidates]
        return pd.DataFrame.from_records(rows)

    to_frame = frame

    def to_json(self) -> dict:
        from cp_debug.files import jsonable

        return jsonable(self.doc)

    def summary(self) -> str:
        r = self.report
        return "\n".join(f"{c.label} vs {r.reference}: {c.outcome.words}: {r.metric} {c.metric.text()} (drop "
                         f"{c.drop.text()})" + (f"; {c.reason}" if c.reason else "") for c in r.candidates)

    def __str__(self) -> str:
        return self.summary()

    def __rich__(self):
        from cp_debug.eval.samples import print_eval

        from cp_debug.api.shown import Shown

        return Shown(lambda console: print_eval(self.report, console))

    def _repr_html_(self) -> str:
        return self.frame().to_html(index=False)


def _sweep_table(doc: dict, console) -> None:
    from cp_debug.sweep.summary import print_summary

    print_summary(doc, console)


def _escape(text: str) -> str:
    import html

    return html.escape(text)

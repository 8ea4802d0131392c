"""The library's report of a bisect: the run's `BisectReport` with what a caller asks first (the outcome and its
exit code, the root cause, the first divergent probe, the findings), the per-probe rows as a pandas DataFrame,
the JSON the command writes with `--json`, and the terminal's tables and the HTML report as a notebook shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from cp_debug.bisect.result import BisectReport, CandidateResult, RootCause
    from cp_debug.compare.noise import Outcome


@dataclass
class Report:
    """What `cp_debug.bisect(...)` returns. `report` is the typed report the command line writes (its JSON is
    `to_json()`); the properties are the worst candidate's (the one that decides the outcome)."""

    report: "BisectReport"

    @property
    def outcome(self) -> "Outcome":
        """within precision, degraded, diverged, inconclusive or not run as asked (`compare/noise.py`)."""
        return self.report.outcome

    @property
    def exit_code(self) -> int:
        """The command's exit code for the same run: 0 within precision, 4 degraded, 1 diverged, …"""
        return int(self.report.outcome.exit_code)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def candidate(self) -> "CandidateResult":
        """The candidate whose outcome is the run's (the first of them)."""
        worst = self.report.outcome
        return next((c for c in self.report.candidates if c.outcome == worst), self.report.candidates[0])

    @property
    def root_cause(self) -> "RootCause | None":
        return self.candidate.root_cause

    @property
    def first_divergent(self) -> str | None:
        return self.candidate.first_divergent

    @property
    def findings(self) -> list[dict]:
        """What the examiners found, every candidate's: {candidate, fault, role, probe, number, text, owner}."""
        return [{"candidate": c.label, **f} for c in self.report.candidates for f in c.findings]

    def frame(self) -> "pd.DataFrame":
        """One row per candidate × probe (`report/frames.py`: the columns of `--csv` / `--parquet`)."""
        from cp_debug.report.frames import to_frame

        return to_frame(self.report)

    to_frame = frame

    def to_json(self) -> dict:
        """The report as `cpdebug bisect --json` writes it for the same run (one serializer: `files.jsonable`)."""
        from cp_debug.files import jsonable

        return jsonable(self.report)

    def summary(self) -> str:
        """Each candidate's verdict, its root cause and the root cause's reason, a line each (what
        `assert_within_precision` fails with)."""
        from cp_debug.report._format import verdict

        lines = []
        for c in self.report.candidates:
            lines.append(f"{c.label} vs {self.report.reference}: {verdict(c, hint=False)[1]}")
            if c.root_cause is not None:
                rc = c.root_cause
                lines.append(f"  {rc.named}" if rc.tipped_by else f"  root cause: {rc.title}")
                if c.root_cause.hint:
                    lines.append(f"  why: {c.root_cause.hint}")
        return "\n".join(lines) or f"vs {self.report.reference}: no candidates"

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<cp_debug Report {self.outcome.value} (exit {self.exit_code}): {self.summary().splitlines()[0]}>"

    def __rich__(self):
        """The terminal's view (`report/table.py`: a table per candidate and the summary panel), at the console's
        width."""
        from cp_debug.api.shown import Shown
        from cp_debug.report.table import render_table

        return Shown(lambda console: render_table(self.report, console))

    def _repr_html_(self) -> str:
        """The HTML report `--html` writes (`report/html.py`), shown inline by Jupyter."""
        from cp_debug.report.html import render_html

        return render_html(self.report)

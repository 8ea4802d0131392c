"""Gates a CI sets on a run's figures (`eval --max-map-drop/--max-nds-drop/--min-match`, `replay --min-match`): each
checked figure is a typed `GateCheck`; a broken one makes the command exit `ExitCode.DIVERGED` with one line naming
the gate and both figures. No gate given: nothing is checked and the exit code is the command's own.

The match rate of a candidate's boxes against the reference's is matched / the larger box count (1 when both have
none), so lost and added boxes both lower it, as replay's agreement counts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

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

    @property
    def broken(self) -> bool:
        if not math.isfinite(self.value):
            return True
        return self.value > self.limit if self.at_most else self.value < self.limit

    def text(self) -> str:
        side = "above" if self.at_most else "below"
        state = f"{side} the limit" if self.broken else "within it"
        return f"{self.option} {self.limit:g}: {self.what} is {self.value:.4f}, {state}"

    def to_json(self) -> dict:
        return {"option": self.option, "limit": self.limit,
                "value": self.value if math.isfinite(self.value) else None, "what": self.what,
                "broken": self.broken}


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


def broken_line(checks: Iterable[GateCheck]) -> str | None:
    """The one line naming every broken gate with both figures, or None when none is broken."""
    broken = [c.text() for c in checks if c.broken]
    return ("gate broken: " + "; ".join(broken)) if broken else None

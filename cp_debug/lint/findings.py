"""What `cpdebug lint` finds, typed: one `LintFinding` per check (a JUnit writer makes one test case of each), and
the `LintReport` that holds them with the inputs they were made from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cp_debug.errors import ExitCode

# ok: the inputs agree; mismatch: they do not (exit 1); warning: worth knowing, not a mismatch (exit 0);
# info: what the inputs say, e.g. thresholds as decoded; skipped: fewer than two inputs give the value
STATUSES = ("ok", "mismatch", "warning", "info", "skipped")


@dataclass(frozen=True)
class Fact:
    """One value and where it came from: `file:key`, an ONNX tensor's dimension, the node's constant.
    `kind` is the input it belongs to: config, params, onnx, node (the node's fixed sizes) or data."""

    value: Any
    where: str
    kind: str


@dataclass(frozen=True)
class LintFinding:
    """One check's result: its name, status and one line naming both values and where each came from.
    `breaks_comparison`: the training config (the reference a run builds) and the ONNX pair (the candidate)
    disagree, so a bisect or sweep of the two compares different networks."""

    check: str
    status: str
    message: str
    facts: tuple[Fact, ...] = ()
    breaks_comparison: bool = False

    def __post_init__(self) -> None:
        assert self.status in STATUSES, self.status

    @property
    def failed(self) -> bool:
        return self.status == "mismatch"

    def line(self) -> str:
        return f"{self.status:<8} {self.check}: {self.message}"

    def to_json(self) -> dict:
        return {"check": self.check, "status": self.status, "message": self.message,
                "breaks_comparison": self.breaks_comparison,
                "values": [{"where": f.where, "kind": f.kind, "value": _plain(f.value)} for f in self.facts]}


@dataclass(frozen=True)
class LintReport:
    """Every finding, in check order, and what was read (`inputs`: config, params files, ONNX files, data)."""

    findings: tuple[LintFinding, ...]
    inputs: dict = field(default_factory=dict)

    @property
    def mismatches(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.failed)

    @property
    def warnings(self) -> tuple[LintFinding, ...]:
        return tuple(f for f in self.findings if f.status == "warning")

    @property
    def consistent(self) -> bool:
        return not self.mismatches

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.consistent else ExitCode.DIVERGED

    def summary(self) -> str:
        checked = [f for f in self.findings if f.status in ("ok", "mismatch")]
        if self.consistent:
            return f"consistent: {len(checked)} checks agree" + (
                f" ({len(self.warnings)} warning{'s' * (len(self.warnings) != 1)})" if self.warnings else "")
        return f"{len(self.mismatches)} mismatch{'es' * (len(self.mismatches) != 1)} of {len(checked)} checks"

    def to_json(self) -> dict:
        return {"schema": "cp_debug.lint/1", "consistent": self.consistent, "summary": self.summary(),
                "inputs": self.inputs, "findings": [f.to_json() for f in self.findings]}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):  # an open distance bin: JSON has no infinity
        return None
    return value

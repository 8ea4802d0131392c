"""JUnit XML for CI systems (`--junit FILE`): one test case per candidate (bisect), frame (sweep), check (fix --check,
lint) or budget, the figures in the failure message, written whole.

The shape is the one Jenkins' xunit plugin reads (`junit-10.xsd`, the schema pytest validates its own XML against;
GitLab and GitHub's test reporters read the same): `<testsuites>` of `<testsuite tests failures errors skipped
time>` with `<properties>` (the run's settings), each `<testcase name classname time>` holding at most one
`<failure message type>` or `<skipped message>`. That schema allows no `<properties>` inside a test case, so a
case's own figures go to its `<system-out>` as `name: value` lines, where every reader shows them.

A command builds `TestCase`s from its typed results and calls `write_junit(path, [TestSuite(...)])`; nothing here
computes a figure.
"""

from __future__ import annotations

import math
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence


@dataclass(frozen=True)
class TestCase:
    """One verdict: `failure` (the message, one line with the figures) or `skipped` (why), else passed."""

    __test__ = False  # not a pytest class

    name: str
    classname: str
    time: float = 0.0
    failure: str | None = None
    skipped: str | None = None
    properties: Mapping[str, object] = field(default_factory=dict)  # the case's figures (its <system-out>)
    failure_type: str = "cpdebug.diverged"

    @property
    def failed(self) -> bool:
        return self.failure is not None


@dataclass(frozen=True)
class TestSuite:
    """One command's run: its cases and the settings that make it (suite `<properties>`)."""

    __test__ = False

    name: str
    cases: Sequence[TestCase]
    properties: Mapping[str, object] = field(default_factory=dict)
    time: float | None = None  # default: the cases' sum

    @property
    def failures(self) -> int:
        return sum(1 for c in self.cases if c.failed)

    @property
    def skipped(self) -> int:
        return sum(1 for c in self.cases if c.skipped is not None and not c.failed)


def _text(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else str(value)


def _seconds(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "0.000"


def junit_tree(suites: Sequence[TestSuite], name: str = "cpdebug") -> ET.ElementTree:
    """The `<testsuites>` document of `suites`."""
    stamp = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat()
    host = socket.gethostname()
    root = ET.Element("testsuites", name=name)
    total_time = tests = failures = 0
    for suite in suites:
        t = suite.time if suite.time is not None else sum(c.time for c in suite.cases)
        el = ET.SubElement(root, "testsuite", name=suite.name, tests=str(len(suite.cases)),
                           failures=str(suite.failures), errors="0", skipped=str(suite.skipped), time=_seconds(t),
                           timestamp=stamp, hostname=host)
        if suite.properties:
            props = ET.SubElement(el, "properties")
            for k, v in suite.properties.items():
                ET.SubElement(props, "property", name=str(k), value=_text(v))
        for case in suite.cases:
            c = ET.SubElement(el, "testcase", name=case.name, classname=case.classname, time=_seconds(case.time))
            if case.failure is not None:
                f = ET.SubElement(c, "failure", message=case.failure, type=case.failure_type)
                f.text = case.failure
            elif case.skipped is not None:
                ET.SubElement(c, "skipped", message=case.skipped)
            if case.properties:
                out = ET.SubElement(c, "system-out")
                out.text = "\n".join(f"{k}: {_text(v)}" for k, v in case.properties.items())
        total_time += t
        tests += len(suite.cases)
        failures += suite.failures
    root.set("tests", str(tests))
    root.set("failures", str(failures))
    root.set("errors", "0")
    root.set("time", _seconds(total_time))
    ET.indent(root)
    return ET.ElementTree(root)


def junit_text(suites: Sequence[TestSuite], name: str = "cpdebug") -> str:
    return ET.tostring(junit_tree(suites, name).getroot(), encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: str | Path, suites: Sequence[TestSuite], name: str = "cpdebug") -> Path:
    """Write the JUnit XML of `suites` to `path`, whole or not at all (`files.write_text_atomic`)."""
    from cp_debug.files import write_text_atomic

    return write_text_atomic(path, junit_text(suites, name), parents=True)



# -- bisect: one case per candidate ------------------------------------------------------------------------------
def bisect_suite(report, extra: Sequence[TestCase] = ()) -> TestSuite:
    """A bisect (`bisect.result.BisectReport`) as one suite: a case per candidate, failed unless it is within its
    precision (fixed mode: within tolerance), the outcome, first divergent probe, root cause and worst probe in the
    message; `extra`: the budget's cases."""
    cases = [_candidate_case(report, c) for c in report.candidates]
    props = {"reference": report.reference, "candidates": ",".join(c.label for c in report.candidates),
             "outcome": report.outcome.value, "tolerance_mode": report.settings.get("tolerance_mode")}
    return TestSuite("cpdebug.bisect", [*cases, *extra], {k: v for k, v in props.items() if v is not None})


def _candidate_case(report, c) -> TestCase:
    from cp_debug.compare.noise import Outcome

    classname = f"cpdebug.bisect.{report.reference}"
    if c.error is not None:
        return TestCase(c.label, classname, c.wall_s or 0.0, failure=f"{c.label} did not run: {c.error}",
                        failure_type="cpdebug.backend")
    outcome = c.outcome if c.outcome is not None else (Outcome.DIVERGED if c.diverged else Outcome.WITHIN_PRECISION)
    worst = max((r for r in c.results if r.diff is not None and math.isfinite(r.diff.rel_rmse)),
                key=lambda r: r.diff.rel_rmse, default=None)
    props: dict[str, object] = {"outcome": outcome.value, "first_divergent": c.first_divergent,
                                "root_cause": c.root_cause.title if c.root_cause and not c.root_cause.tipped_by
                                else None,
                                "near_tie": ",".join(c.root_cause.tipped_by) if c.root_cause else None,
                                "hint": c.root_cause.hint if c.root_cause else None, "judged_at": c.judged_at}
    if worst is not None:
        props.update({"worst_probe": worst.probe, "worst_rel_rmse": worst.diff.rel_rmse,
                      "worst_rel_max": worst.diff.rel_max})
    props = {k: v for k, v in props.items() if v is not None}
    failure = None
    if outcome is not Outcome.WITHIN_PRECISION:
        parts = [f"{c.label} vs {report.reference}: {outcome.words}"]
        if c.outcome_reason:
            parts.append(c.outcome_reason)
        if c.first_divergent:
            parts.append(f"first divergent {c.first_divergent}")
        if c.root_cause:
            parts.append(c.root_cause.named + (f" ({c.root_cause.hint})" if c.root_cause.hint else ""))
        if worst is not None:
            parts.append(f"worst rel. RMSE {worst.diff.rel_rmse:.3g} (max/|ref|max {worst.diff.rel_max:.3g}) at "
                         f"{worst.probe}")
        failure = "; ".join(parts)
    return TestCase(c.label, classname, c.wall_s or 0.0, failure=failure, properties=props,
                    failure_type=f"cpdebug.{outcome.value}")

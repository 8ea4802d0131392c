"""The *run* examiners (`contract.Role.RUN`): what the candidate's run as a whole shows — the deployed graph's own
nodes in the root cause's segment (`graph_blame.py`), a runtime computing the user's file wrong at its defaults
(`runtime_fault.py`), the root cause restored and run to the outputs (`intervention.py`). Their order in the story is
`findings/catalog.py`'s."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.backends.spec import Capability
from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment


@dataclass(frozen=True)
class GraphDifference:
    """The deployed graph's own nodes (and its clamped weights, its inf/0 scales) in the root cause's segment."""

    fault: str = "graph"
    role: Role = Role.RUN

    def applies(self, c: Candidate) -> bool:
        return c.own_files

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.graph_blame import graph_blame

        blame = graph_blame(seg.run, seg.state, seg.root)
        return Finding(self.fault, self.role, seg.root, blame.hint(None), float(len(blame.in_segment)), detail=blame)


@dataclass(frozen=True)
class RuntimeDefaults:
    """A runtime that computes the user's file wrong at its default settings, or dies making its session there —
    diverged, with the setting that cures it — or refuses it there (`runtime_fault.py`)."""

    fault: str = "runtime"
    role: Role = Role.RUN

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.spec.can(Capability.ORT_SESSIONS)  # its files, or the --onnx file it runs as its own

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.runtime_fault import runtime_fault

        from cp_debug.compare.noise import Outcome

        fault = runtime_fault(seg.run, seg.state)
        if fault is None:
            return None
        return Finding(self.fault, self.role, None, fault.text, fault.default,
                       outcome=(Outcome.DIVERGED, fault.text) if fault.wrong else None, detail=fault)


@dataclass(frozen=True)
class Intervened:
    """The root cause restored in the candidate's terms and run to the outputs (`intervention.py`, run before the
    verdict): confirmed where that brings them back, else what was tried; its words close the hint."""

    fault: str = "intervention"
    role: Role = Role.RUN

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.state.intervention is not None

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.intervention import about

        tried = seg.state.intervention
        if not about(tried, seg.root):
            return None
        cure = tried.cure
        return Finding(self.fault, self.role, seg.root, tried.text(),
                       cure.after.ratio if cure is not None else tried.before.ratio, detail=tried, adds_to_hint=True)

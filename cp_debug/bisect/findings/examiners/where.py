"""The *where* examiners (`contract.Role.WHERE`): a finding that places the cause itself — a decision measured on the
reference's choice (`choice_flip.py`), a near tie or an index a float rounds across (`flip_why.py`, `index_why.py`),
the tensor whose INT8 / FP8 range loses its values (`int8_story.py`), a Q/DQ pair that rounds to zero before a Log /
Div / Sqrt / Pow (`qdq_flush.py`). Their order in the story is `findings/catalog.py`'s."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.backends.spec import Capability
from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment
from cp_debug.bisect.findings.examiners import HALF, QUANTIZED, kept_at_outputs


@dataclass(frozen=True)
class MeasuredChoice:
    """A TopK / ArgMax / threshold / NMS whose choice the candidate takes otherwise, measured on the stage run with
    its decisions exposed and run again on the reference's choice (`choice_flip.py`)."""

    fault: str = "decision"
    role: Role = Role.WHERE

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.precision in HALF and c.spec.can(Capability.ORT_SESSIONS) and not c.own_files

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.choice_flip import choice_flip

        flip = choice_flip(seg.run, seg.state, seg.first_divergent) if seg.root is not None else None
        if flip is None:
            return None
        judged = flip.verdict() if seg.run.opts.tolerance_mode == "model" else None
        return Finding(self.fault, self.role, flip.probe, flip.text(), flip.members.margin, replaces_hint=True,
                       outcome=judged, detail=flip, tie=f"{flip.op} {flip.node!r}")


@dataclass(frozen=True)
class NearTie:
    """A decision in the first divergent probe's segment whose reference margin is within the format's rounding step,
    or a float made an index that rounds across its boundary (`flip_why.py`, `index_why.py`)."""

    fault: str = "near tie"
    role: Role = Role.WHERE

    def applies(self, c: Candidate) -> bool:
        return c.ran

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.choice_flip import known_flip

        flip = known_flip(seg.run, seg.state, seg.first_divergent, seg.root) if seg.root is not None else None
        if flip is None:
            return None
        number = getattr(flip, "gap", None)  # a decision's margin (`flip_why.Flip`); an index has none: no tie
        return Finding(self.fault, self.role, flip.probe, flip.text(), getattr(flip, "step", None) if number is None
                       else number, replaces_hint=True, detail=flip, restores=kept_at_outputs(flip),
                       tie=f"{flip.op} {flip.node!r}" if number is not None else None)


@dataclass(frozen=True)
class RangeLoss:
    """The tensor whose calibrated INT8 / FP8 range loses its values, at every level (`int8_story.py`)."""

    fault: str = "range"
    role: Role = Role.WHERE

    def applies(self, c: Candidate) -> bool:  # the built-in's quantizer, or a user's Q/DQ file (its scales)
        return c.ran and c.precision in QUANTIZED

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.int8_story import range_root_cause

        moved = range_root_cause(seg.run, seg.state, list(seg.results), seg.first_divergent, seg.root)
        if moved is None:
            return None
        return Finding(self.fault, self.role, moved[0], moved[1], ladder=moved[2])


@dataclass(frozen=True)
class QdqFlushBefore:
    """A user's Q/DQ file (or the built-in INT8's quantized graph) whose pairs round to zero the values an op needing a
    positive input (Log / Div / Sqrt / Pow) reads, placed at the flushing tensor with the share and its removal tried
    at the outputs (`qdq_flush.py`)."""

    fault: str = "qdq flush"
    role: Role = Role.WHERE

    def applies(self, c: Candidate) -> bool:
        return (c.ran and c.precision in QUANTIZED and (c.own_files or c.spec.precision == "int8")
                and c.spec.runs_onnx and c.spec.can(Capability.ORT_SESSIONS))

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.qdq_flush import qdq_flush

        if seg.root is None:
            return None
        found = qdq_flush(seg.run, seg.state, seg.results, seg.first_divergent, seg.root)
        if found is None or (found.cured is not None and not found.cured < found.before and not found.front_back):
            return None  # its removal (or the front end's) leaves the outputs no better: no cure, no root placed
        back = bool(found.back or found.front_back)
        within = min(x for x in (found.cured, found.front_cured, float("inf")) if x is not None) < 1
        tried = seg.state.intervention
        if not back and (not within or (tried is not None and tried.cure is not None)):
            return None  # the outputs not within their budget with it removed, or another cause brings them back
        return Finding(self.fault, self.role, found.probe, found.text(), found.share, detail=found,
                       restores=kept_at_outputs(found), measured=back, mechanism=True)

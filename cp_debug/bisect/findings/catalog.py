"""The one ordered list of examiners (`contract.py`): each fault class's module behind `applies` / `examine`.

The order is the story's. *Where*: a decision measured (the stage run again on the reference's choice,
`choice_flip.py`), a near tie at a TopK / ArgMax / saturated Softmax (`flip_why.py`), a MoE's experts routed otherwise
(`bisect/routing.py`), an index a float rounds across (`index_why.py`), a decision taken otherwise by a candidate
`choice_flip.py` does not measure (INT8, FP8, a user's file: `quantized/choice.py`), a scale no number in several pairs
of a file (`quantized/same_fault.py`), the tensor whose INT8 / FP8 range loses its values (`int8_story.py`), a user's
Q/DQ file's pairs that round to zero before a Log / Div / Sqrt / Pow (`qdq_flush.py`). *Why*, at the root cause: a
constant or statistic beyond float16's range (`constant_range.py`), a flush to zero before a Log / Div / Sqrt / Pow
named at its producer (`flush_why.py`) — each in place of the rounding hint —, the op-level why of its segment by format
(`segment_why.py` FP16/BF16, `segment_int8.py`, `segment_fp8.py`, `segment_blocks.py`), a user's Q/DQ file's scales
(`qdq_file_why.py`), an eps lost (`eps_why.py`), an export that computes otherwise (`export_why.py`), the calibration's
fit (`segment_int8.calibration_fit`), a Conv's weights that cancel over an offset input, rounded by the built-in INT8 or
read from a user's Q/DQ file's own levels and scales (`quantized/cancel.py`), a graph output of scores quantized coarser
than a row's top two (`quantized/output_step.py`) or a Sigmoid's 0.5 (`threshold_step.py`), in place of the rounding
hint. *Run*: the deployed nodes (`graph_blame.py`), a runtime computing the user's file wrong at its defaults
(`runtime_fault.py`), the root cause restored and run to the outputs (`intervention.py`, issue 115)."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.backends.spec import Capability
from cp_debug.bisect.findings.contract import Candidate, Examiner, Finding, Role, Segment, examined
from cp_debug.bisect.findings.quantized.cancel import CancelledWeights
from cp_debug.bisect.findings.quantized.output_step import CoarseOutput
from cp_debug.bisect.findings.quantized.choice import QuantizedChoice
from cp_debug.bisect.findings.quantized.same_fault import SameFault
from cp_debug.bisect.routing import RoutingChange
from cp_debug.bisect.ranking import beyond_locally
from cp_debug.compare.diff import NON_FINITE

HALF = ("fp16", "bf16")
QUANTIZED = ("int8", "fp8")
BLOCKS = ("nvfp4", "mxfp8")


def _module_probe(seg: Segment):
    """The root cause's probe spec and result where it is a module's (the whys read a module's segment)."""
    p, r = (seg.run.probes.get(seg.root), seg.state.results.get(seg.root)) if seg.root else (None, None)
    return (p, r) if p is not None and r is not None and p.kind == "module" else (None, None)


def _own_status(r) -> str:
    """A result's segment's own status: its local error's, its propagated one's where no local error was measured."""
    return r.local.status if r.local is not None else r.status


def _tried(found) -> tuple:
    """The keep set `found` tried at the outputs, (Restoration, OutputError), as `Finding.restores` carries it."""
    return (found.at_outputs,) if getattr(found, "at_outputs", None) is not None else ()


def _verified_keep(seg: Segment, p, why) -> tuple:
    """An FP16 / BF16 segment's keep set verified on its segment (`segment_why.SegmentWhy`), run at the outputs where
    it could be the smaller cure (`restore.keep_at_outputs`) before its words are made, and offered to the intervention
    as run — (Restoration, OutputError): the hint's keep set and the confirmation's are one; () where not run there."""
    state = seg.state
    if not (getattr(why, "verified", None) and getattr(why, "keep", ()) and state.spec.precision in ("fp16", "bf16")
            and state.spec.runs_onnx and state.spec.onnx_dir is None and getattr(why, "lane", None) is None):
        return ()
    from cp_debug.bisect.cures.restore import KEEP, Restoration, keep_at_outputs

    source = "the overflow's keep set" if why.finding.kind == "overflow" else "the segment's verified keep set"
    r = Restoration(p.name, p.stage, KEEP, nodes=tuple(why.keep), source=source)
    err = keep_at_outputs(seg.run, state, r)
    return ((r, err),) if err is not None else ()


# -- where ----------------------------------------------------------------------------------------------------------
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
                       else number, replaces_hint=True, detail=flip, restores=_tried(flip),
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
                       restores=_tried(found), measured=back, mechanism=True)


# -- why ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConstantRange:
    """A constant or a statistic the root cause reads beyond float16's range (a BatchNorm's running variance, a
    weight, a fill): said as such, in place of the rounding hint (`constant_range.py`)."""

    fault: str = "constant"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.precision == "fp16" and c.spec.runs_onnx

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.constant_range import constant_out_of_range

        p = seg.run.probes.get(seg.root) if seg.root else None
        r = seg.state.results.get(seg.root) if seg.root else None
        if p is None or r is None or _own_status(r) == "ok":
            return None
        found = constant_out_of_range(seg.run, seg.state, p.stage, p.name)
        return Finding(self.fault, self.role, p.name, found.text(), found.value, replaces_hint=True,
                       detail=found) if found else None


@dataclass(frozen=True)
class SegmentWhy:
    """The op inside the root cause's segment that overflows, flushes or first makes NaN/Inf, or the tensor whose
    INT8 / FP8 / block range loses its values, with its advice tried on the segment; `owner`: the module whose own
    code holds the op, where not the probe's nor inside it (`owner_cause.owner`)."""

    fault: str = "segment"
    role: Role = Role.WHY
    unless: tuple[str, ...] = ("flush", "constant")  # the mechanism said before it: no second why

    def applies(self, c: Candidate) -> bool:
        return c.ran

    def examine(self, seg: Segment) -> Finding | None:
        p, r = _module_probe(seg)
        if p is None:
            return None
        precision = seg.state.spec.precision
        local_bad = r.local is not None and r.local.status != "ok"
        if precision in (*QUANTIZED, *BLOCKS):  # judged by their budget, not atol / rtol
            local_bad = beyond_locally(r)
        if not (local_bad or r.status in NON_FINITE):
            return None
        from cp_debug.bisect.findings.segment_blocks import explain_block_segment
        from cp_debug.bisect.findings.segment_fp8 import explain_fp8_segment
        from cp_debug.bisect.findings.segment_int8 import explain_int8_segment
        from cp_debug.bisect.findings.segment_why import explain_segment

        explain = {"int8": explain_int8_segment, "fp8": explain_fp8_segment, "nvfp4": explain_block_segment,
                   "mxfp8": explain_block_segment}.get(precision, explain_segment)
        why = explain(seg.run, seg.state, p.stage, p.name)
        if why is None:
            return None
        from dataclasses import replace

        from cp_debug.bisect.cures.advice import keep_held
        from cp_debug.bisect.findings.owner_cause import owner
        from cp_debug.bisect.findings.segment_why import SegmentWhy as HalfWhy

        restores = _verified_keep(seg, p, why)  # its advice held to the outputs before its words are made
        if isinstance(why, HalfWhy) and why.verified and why.keep and why.lane is None:
            why = replace(why, at_outputs=keep_held(seg.state, why.keep, restores[0][1] if restores else None))
        return Finding(self.fault, self.role, p.name, why.text(), owner=owner(p.name, why), detail=why,
                       restores=restores)


@dataclass(frozen=True)
class SharedScaleWhy:
    """A user's Q/DQ file whose one scale covers a Concat of inputs of very different ranges (or a graph output's
    pair), confirmed at the outputs by the intervention that removed its pairs (`shared_scale.py`): said in place of
    the probe's hint, with the cure in the quantizer's terms."""

    fault: str = "shared scale"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.own_files and c.state.intervention is not None

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.cures import restore, shared_scale

        cure = seg.state.intervention.cure
        if cure is None or len(cure.restored) != 1 or cure.restored[0].how != restore.UNPAIRED \
                or cure.restored[0].probe != seg.root or cure.restored[0].detail is None:
            return None
        found = shared_scale.with_cure(seg.run, seg.state, cure.restored[0])  # its cure tried as the quantizer's
        return Finding(self.fault, self.role, seg.root, found.text(), found.step, replaces_hint=True, detail=found)


@dataclass(frozen=True)
class QdqFile:
    """Why a user's own Q/DQ file loses its values at the root cause: its scales and zero points (`qdq_file_why`)."""

    fault: str = "qdq file"
    role: Role = Role.WHY
    unless: tuple[str, ...] = ("segment", "shared scale")  # the op-level why said, the file's scales are no second

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.own_files

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.qdq_file_why import qdq_file_why

        text = qdq_file_why(seg.run, seg.state, seg.root) if seg.root else None  # any probe: a file's tensor
        return Finding(self.fault, self.role, seg.root, text) if text else None


@dataclass(frozen=True)
class FlushBefore:
    """Underflow before a Log / Div / Sqrt / Pow named at its producer (the eps Add), with the keep set tried at the
    outputs (`flush_why.py`): in place of "no FP32 value leaves float16's range"."""

    fault: str = "flush"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.precision == "fp16" and c.spec.runs_onnx and not c.own_files

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.flush_why import flush_before

        p = seg.run.probes.get(seg.root) if seg.root else None
        r = seg.state.results.get(seg.root) if seg.root else None
        if p is None or r is None or _own_status(r) != "inf":  # 0 / 0 is NaN: an eps's (`Eps`), not a flush's
            return None
        found = flush_before(seg.run, seg.state, p.stage, p.name)
        return Finding(self.fault, self.role, p.name, found.text(), found.share, replaces_hint=True,
                       detail=found, restores=_tried(found)) if found else None


@dataclass(frozen=True)
class Eps:
    """A normalisation's eps lost (float16 underflow, or dropped by the exporter) where the segment makes NaN."""

    fault: str = "eps"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran

    def examine(self, seg: Segment) -> Finding | None:
        p, r = _module_probe(seg)
        if p is None:
            return None
        if _own_status(r) != "nan":
            return None  # 0 / 0 is NaN; an Inf is an overflow's, not an eps's
        from cp_debug.bisect.findings.eps_why import eps_reason

        text = eps_reason(seg.run, p.stage, p.name, seg.state.spec.precision)
        return Finding(self.fault, self.role, p.name, text) if text else None


@dataclass(frozen=True)
class Export:
    """The exported graph computing otherwise than the module in the root cause's segment (`export_why.py`)."""

    fault: str = "export"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran

    def examine(self, seg: Segment) -> Finding | None:
        p, r = _module_probe(seg)
        if p is None:
            return None
        if _own_status(r) == "ok":
            return None
        from cp_debug.bisect.findings.export_why import export_reason

        text = export_reason(seg.run, seg.state, p.stage, p.name)
        return Finding(self.fault, self.role, p.name, text) if text else None


@dataclass(frozen=True)
class CalibrationFit:
    """How the INT8 / FP8 calibration set fits the input on the root cause's segment."""

    fault: str = "calibration"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.spec.precision in QUANTIZED

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.segment_int8 import calibration_fit

        p, _ = _module_probe(seg)
        text = calibration_fit(seg.run, seg.state, p.stage, p.name) if p is not None else None
        return Finding(self.fault, self.role, p.name, text) if text else None


# -- run ------------------------------------------------------------------------------------------------------------
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


EXAMINERS: tuple[Examiner, ...] = (
    MeasuredChoice(), NearTie(), RoutingChange(), QuantizedChoice(), SameFault(), RangeLoss(), QdqFlushBefore(),
    ConstantRange(), FlushBefore(), SegmentWhy(), SharedScaleWhy(), QdqFile(), Eps(), Export(), CalibrationFit(),
    CancelledWeights(), CoarseOutput(), GraphDifference(), RuntimeDefaults(), Intervened())


def where(seg: Segment) -> Finding | None:
    """The first *where* finding: the cause placed by a decision, an index or a range; a later one whose own
    restoration brought the outputs back (`Finding.measured`) before one placed by its kind alone (a user's INT8
    file whose pairs flush before a Log, their removal measured, over a conv's range read from its scale). A
    decision is measured on the reference's choice: an intervention of its own."""
    first = None
    for e in EXAMINERS:
        if e.role is Role.WHERE and (found := examined(e, seg)) is not None:
            if found.measured or found.replaces_hint:
                return found
            first = first or found
    return first


def findings(seg: Segment, role: Role) -> dict[str, Finding]:
    """Every finding of `role` on `seg`, by fault class, in the list's order."""
    found: dict[str, Finding] = {}
    for e in EXAMINERS:
        if e.role is role and not set(getattr(e, "unless", ())) & set(found) and (f := examined(e, seg)) is not None:
            found[f.fault] = f
    return found

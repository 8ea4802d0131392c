"""The *why* examiners (`contract.Role.WHY`): the reason at the root cause's segment — a constant beyond float16's
range (`constant_range.py`), the segment's op by format (`segment_why.py`, `segment_int8.py`, `segment_fp8.py`,
`segment_blocks.py`), a user's Q/DQ file's shared scale (`cures/shared_scale.py`) or its scales (`qdq_file_why.py`),
a flush before a Log / Div / Sqrt / Pow (`flush_why.py`), an eps lost (`eps_why.py`), an export that computes
otherwise (`export_why.py`), the calibration's fit (`segment_int8.calibration_fit`). Their order in the story is
`findings/catalog.py`'s."""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment
from cp_debug.bisect.findings.examiners import BLOCKS, QUANTIZED, kept_at_outputs
from cp_debug.bisect.ranking import beyond_locally
from cp_debug.compare.diff import NON_FINITE


def _module_probe(seg: Segment):
    """The root cause's probe spec and result where it is a module's (the whys read a module's segment)."""
    p, r = (seg.run.probes.get(seg.root), seg.state.results.get(seg.root)) if seg.root else (None, None)
    return (p, r) if p is not None and r is not None and p.kind == "module" else (None, None)


def _own_status(r) -> str:
    """A result's segment's own status: its local error's, its propagated one's where no local error was measured."""
    return r.local.status if r.local is not None else r.status


def _module_words(examiner, seg: Segment, fits, reason) -> Finding | None:
    """`examiner`'s finding at a module's root cause (`_module_probe`) whose own status `fits`: the words
    `reason(probe)` says (None: no finding)."""
    p, r = _module_probe(seg)
    if p is None or not fits(_own_status(r)):
        return None
    text = reason(p)
    return Finding(examiner.fault, examiner.role, p.name, text) if text else None


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
                       detail=found, restores=kept_at_outputs(found)) if found else None


@dataclass(frozen=True)
class Eps:
    """A normalisation's eps lost (float16 underflow, or dropped by the exporter) where the segment makes NaN."""

    fault: str = "eps"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.eps_why import eps_reason

        # 0 / 0 is NaN; an Inf is an overflow's, not an eps's
        return _module_words(self, seg, lambda status: status == "nan",
                             lambda p: eps_reason(seg.run, p.stage, p.name, seg.state.spec.precision))


@dataclass(frozen=True)
class Export:
    """The exported graph computing otherwise than the module in the root cause's segment (`export_why.py`)."""

    fault: str = "export"
    role: Role = Role.WHY

    def applies(self, c: Candidate) -> bool:
        return c.ran

    def examine(self, seg: Segment) -> Finding | None:
        from cp_debug.bisect.findings.export_why import export_reason

        return _module_words(self, seg, lambda status: status != "ok",
                             lambda p: export_reason(seg.run, seg.state, p.stage, p.name))


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

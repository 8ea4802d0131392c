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
(`runtime_fault.py`), the root cause restored and run to the outputs (`intervention.py`, issue 115).

The examiners themselves stand by role in `examiners/` (`where.py`, `why.py`, `run.py`); this module holds their one
order and the reducers over it (`where`, `findings`)."""

from __future__ import annotations

from cp_debug.bisect.findings.contract import Examiner, Finding, Role, Segment, examined
from cp_debug.bisect.findings.examiners.run import GraphDifference, Intervened, RuntimeDefaults
from cp_debug.bisect.findings.examiners.where import MeasuredChoice, NearTie, QdqFlushBefore, RangeLoss
from cp_debug.bisect.findings.examiners.why import (CalibrationFit, ConstantRange, Eps, Export, FlushBefore, QdqFile,
                                                    SegmentWhy, SharedScaleWhy)
from cp_debug.bisect.findings.quantized.cancel import CancelledWeights
from cp_debug.bisect.findings.quantized.choice import QuantizedChoice
from cp_debug.bisect.findings.quantized.output_step import CoarseOutput
from cp_debug.bisect.findings.quantized.same_fault import SameFault
from cp_debug.bisect.routing import RoutingChange

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

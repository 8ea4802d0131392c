"""Why a probe diverges, where the data shows it: each rule looks at the numbers, never guesses a cause."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cp_debug.bisect.result import ProbeResult
from cp_debug.compare.diff import NON_FINITE
from cp_debug.half import FP16_MAX


@dataclass(frozen=True)
class Int8Range:
    """A probe's reference values against its calibrated INT8 range (`int8_range`)."""

    amax: float
    saturated: float  # share of |x| beyond amax
    rounded_to_zero: float  # share of |x| that rounds to 0 at scale amax / 127
    median: float | None = field(default=None, compare=False)  # the median |x| of the values that count (below)
    # the values that count: above FP32's epsilon of the range (a masked softmax's 1e-21 weights add nothing in FP32
    # either): their share of all, and the share of them that rounds to zero
    counted: float | None = field(default=None, compare=False)
    counted_zero: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Exclusion:
    """The probe's own INT8 advice — its layer left out of INT8 — decided at the outputs before its words are written
    (`cures/advice.exclusion`, from the intervention's runs): offered where its restoration brought them back, else
    its run's figures stand for it (nearer, or no better), or it is said not run there."""

    verified: bool
    nodes: tuple[str, ...] = ()  # what its best run at the outputs left out of INT8 (): not run there
    what: str = ""  # that run in words (`restore.Restoration.words`)
    figures: str = ""  # the outputs' figures before → after it (`restore.AtOutputs.figures`)
    nearer: bool = False  # the outputs nearer their budget with it, not back

    def words(self) -> str:
        """What stands for the advice where it is not offered."""
        if not self.what:
            return "not offered: its exclusion was not run at the outputs"
        return f"{self.what} tried at the outputs: {self.figures}" + (
            " — nearer, not the cure" if self.nearer else " — no better: not offered")


@dataclass(frozen=True)
class HintContext:
    precision: str  # candidate precision
    ref_absmax: float | None = None  # reference |x| max at the probe output
    ref_input_absmax: float | None = None  # reference |x| max at the segment's inputs
    precision_note: str | None = None  # set when the backend did not run the precision asked
    export_warnings: tuple[str, ...] = ()  # exporter warnings attributed to this module or its children
    int8_range: Int8Range | None = None
    layer_norm: bool = False  # the probe is a LayerNorm (module, LayerNormalization node or decomposed chain)
    ln_spread: float | None = None  # a LayerNorm's reference input: max |x - mean| over its normalised axis
    # the op-level finding in the segment, with its advice tried there (FP16: segment_why.py; INT8: segment_int8.py,
    # which then stands for the probe's own `int8_range` reading and its unverified advice)
    segment_why: str | None = None
    # why a normalisation's division makes NaN: its eps underflowing float16, or dropped by the exporter (eps_why.py)
    eps: str | None = None
    # the exported graph computing something else than the module: other rounding, or an op removed (export_why.py)
    export: str | None = None
    # INT8: how the run's calibration fits this input on the segment (segment_int8.calibration_fit)
    calib_fit: str | None = None
    # a user's Q/DQ file: how the layer is left out of the file's quantization, in the file's terms (its node in the
    # quantizer's `nodes_to_exclude`, or its Q/DQ pairs removed: `cures/advice.file_exclusion`); None: the built-in's
    file_exclude: str | None = None
    # the INT8 advice as the outputs decided it (None: nothing run there, the advice as written)
    exclusion: Exclusion | None = None
    # a story's cure ladder stands for the probe's own INT8 reading and its advice (`int8_story.merged`): not said
    ladder: bool = False
    # the op writing the probe where it bounds its output by its nature (`BOUNDED`: a Softmax's probabilities in
    # [0, 1]): a range it sets is no outlier's
    op: str | None = None


# ops whose output lies in a range of their own by construction, whatever their input: (low, high)
BOUNDED = {"Softmax": (0.0, 1.0), "Sigmoid": (0.0, 1.0), "HardSigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0),
           "Softsign": (-1.0, 1.0)}


def hint_for(r: ProbeResult, ctx: HintContext) -> str | None:
    parts: list[str] = []
    d, loc = r.diff, r.local
    if r.status == "shape_mismatch" and d is not None:
        parts.append(f"shape/layout mix-up: reference {list(d.ref_shape)} vs candidate {list(d.test_shape)} — "
                     "check which tensor feeds this input (e.g. processed vs raw features)")
    nonfinite = (d is not None and (d.nan or d.inf)) or (loc is not None and loc.status in NON_FINITE)
    if ctx.export_warnings:
        parts.append("data-dependent control flow frozen by the exporter: " + ctx.export_warnings[0])
    if ctx.eps and nonfinite:  # the why of the NaN; the op-level finding after it carries the verified advice
        parts.append(ctx.eps)
    if ctx.export:  # read on the FP32 graph: the why whatever the precision
        parts.append(ctx.export)
    if ctx.segment_why:
        parts.append(ctx.segment_why)
    elif nonfinite and not (ctx.eps or ctx.export):
        parts.append(_nonfinite_hint(ctx))
    if ctx.calib_fit:
        parts.append(ctx.calib_fit)
    if ctx.int8_range is not None and not (ctx.precision == "int8" and ctx.segment_why):
        parts += _int8_parts(ctx.int8_range, bool(parts), ctx)
    if ctx.precision == "tf32" and not nonfinite and not ctx.export_warnings:
        parts.append("TF32 sensitivity: TF32 keeps 10 mantissa bits in matmul/conv; compare with TF32 off")
    if ctx.precision in ("fp16", "bf16") and not nonfinite and not parts and loc is not None \
            and not ctx.segment_why and not ctx.precision_note:
        if ctx.ref_absmax is not None and ctx.ref_absmax > 0 and d is not None and d.ref_absmax < 1e-3:
            parts.append(f"{ctx.precision.upper()} underflow: values here are tiny (|x| ≤ {d.ref_absmax:.2g}) and "
                         "lose their precision; keep this layer in FP32")
        else:
            parts.append(f"{ctx.precision.upper()} {ROUNDING_ONLY} (local rel. error {loc.rel_rmse:.2g}); keep it in "
                         "FP32 if it matters")
    if ctx.precision_note:  # after the reason, once (issue 84: it came first, up to three times)
        parts.append(_unsaid(ctx.precision_note, ctx.segment_why))
    return "; ".join(parts) if parts else None


ROUNDING_ONLY = "rounding introduced by this layer"  # the hint where nothing but the local error is known


CONFIRMED = "; confirmed by "  # where the intervention's words close a hint (`findings/intervention.py`)


def rounding_only(hint: str | None) -> bool:
    """Whether `hint` says no more than the fallback: the precision's rounding, by the local error (the
    intervention's words after it aside)."""
    hint = hint.partition(CONFIRMED)[0] if hint is not None else None
    return hint is not None and ROUNDING_ONLY in hint and hint.count(";") == 1  # "… (local …); keep it in FP32 …"


def _unsaid(note: str, why: str | None) -> str:
    """The precision note less its ClipQuantFusion sentence where the why already names the rule with its numbers
    (`bisect/findings/clip_fusion.py`): said once."""
    if not (why and why.startswith("ONNX Runtime's ClipQuantFusion drops")):
        return note
    return "; ".join(x for x in note.split("; ") if "ONNX Runtime's ClipQuantFusion drops" not in x)


def reads_lost(ctx: HintContext) -> bool:
    """The probe's hint says its own INT8 reading of lost resolution (`_int8_parts`)."""
    return (ctx.int8_range is not None and not (ctx.precision == "int8" and ctx.segment_why)
            and ctx.int8_range.rounded_to_zero > 0.5)


def _int8_parts(rng: "Int8Range", said: bool, ctx: HintContext) -> list[str]:
    """What the calibrated range does to the reference's values here: saturation, lost resolution, else the
    layer's own quantisation error (also where nothing else was said); the advice in the file's terms for a user's
    file (`file_exclude`), else the built-in's flag, where the outputs did not decide otherwise (`exclusion`); the
    two readings with advice not said where a story's ladder stands for them (`ladder`)."""
    amax, sat, zero = rng.amax, rng.saturated, rng.rounded_to_zero
    flag = "from INT8 (--exclude-int8)"  # the built-in INT8 candidate's own flag
    held = ctx.exclusion is not None and not ctx.exclusion.verified  # tried at the outputs and not the cure
    parts = []
    if sat > 1e-4:
        parts.append(f"INT8 saturation: {sat:.2%} of the reference values exceed the calibrated range ±{amax:.3g}")
    if ctx.ladder:
        return parts
    if zero > 0.5 and ctx.op in BOUNDED:
        advice = ctx.exclusion.words() if held else f"{ctx.file_exclude or 'exclude this layer ' + flag}"
        parts.append(f"INT8 resolution lost: {zero:.0%} of the values round to zero — {bounded_range(rng, ctx.op)}; "
                     f"{advice}")
    elif zero > 0.5:
        advice = (ctx.exclusion.words() if held
                  else f"{ctx.file_exclude or 'exclude this layer ' + flag} or clip the outliers")
        parts.append(f"INT8 resolution lost: {zero:.0%} of the values round to zero (range ±{amax:.3g} is set "
                     f"by outliers); {advice}")
    if not (said or parts) or (sat <= 1e-4 and zero <= 0.5):
        advice = ctx.exclusion.words() if held else f"{ctx.file_exclude or 'exclude it ' + flag} if it matters"
        parts.append(f"INT8 quantisation error of this layer; {advice}")
    return parts


def bounded_range(rng: "Int8Range", op: str) -> str:
    """Why most values of a bounded op's output (`BOUNDED`) round to zero: the range is the op's own, and most
    values lie near zero below half a step of it (a softmax over many classes: most probabilities near 0). The
    probe's reading (`hint_for`) and its segment's first quantized tensor (`segment_int8.Int8Finding`) say it so."""
    low, high = BOUNDED[op]
    half = 0.5 * rng.amax / 127.0
    median = f", their median |x| {rng.median:.3g}" if rng.median is not None else ""
    counted = ""
    if rng.counted is not None and rng.counted_zero is not None and rng.counted < 1:  # a mask's zeros apart
        counted = (f"; of the {rng.counted:.0%} above FP32's epsilon of the range (the rest add nothing to a sum "
                   f"with it in FP32 either: a mask's weights, e^-20 tails), {rng.counted_zero:.0%} round to zero")
    return (f"a {op}'s output, in [{low:g}, {high:g}] by the op itself (its range ±{rng.amax:.3g} is the op's, not "
            f"set by outliers): most of its values lie near 0, below half an INT8 step ({half:.3g}){median}"
            f"{counted}")


def _nonfinite_hint(ctx: HintContext) -> str:
    """NaN/Inf in the candidate where the reference is finite, without an op-level finding: what the data says."""
    big = max([v for v in (ctx.ref_absmax, ctx.ref_input_absmax) if v is not None and math.isfinite(v)],
              default=None)
    if ctx.precision == "fp16" and ctx.layer_norm and ctx.ln_spread is not None and ctx.ln_spread > 256:
        return (f"FP16 LayerNorm overflow: its variance sums (x - mean)^2, which passes 65504 once "
                     f"|x - mean| > 256, and the reference's input reaches |x - mean| = {ctx.ln_spread:.3g} "
                     "although x itself is in range; keep this LayerNorm in FP32 (--keep-fp32: "
                     "the LayerNormalization node, or the Pow and ReduceMean of its decomposed "
                     "ReduceMean/Sub/Pow/Sqrt/Div chain), or export at opset >= 17 for one LayerNormalization "
                     "node with FP32 statistics")
    elif ctx.precision == "fp16" and big is not None and big > FP16_MAX:
        return (f"values beyond the FP16 range: the reference reaches |x| = {big:.3g} > {FP16_MAX:g}; "
                     "keep this layer in FP32 (--keep-fp32) or rescale it")
    elif ctx.precision == "fp16":
        return ("NaN/Inf appear inside this segment in FP16: an intermediate value exceeds 65504 or "
                     "underflows; keep it in FP32 (--keep-fp32)")
    else:
        return ("the candidate produces NaN/Inf here while the reference is finite")


def int8_range(ref_input: np.ndarray, amax: float) -> Int8Range:
    """How `ref_input` fits the range ±amax: the share of |x| > amax, the share that rounds to 0 at scale amax/127."""
    a = np.abs(np.asarray(ref_input, dtype=np.float64))
    if a.size == 0 or amax <= 0:
        return Int8Range(amax, 0.0, 0.0)
    live = a[a > amax * float(np.finfo(np.float32).eps)]
    return Int8Range(amax, float((a > amax * (1 + 1e-6)).mean()), float((a < 0.5 * amax / 127.0).mean()),
                     float(np.median(live)) if live.size else None, live.size / a.size,
                     float((live < 0.5 * amax / 127.0).mean()) if live.size else None)

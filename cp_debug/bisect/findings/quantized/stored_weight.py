"""A weight a user's Q/DQ file stores quantized, against the reference's weight of the same node (issue 115): its
rounding at the file's own scale where its levels are the reference's weight rounded (per tensor or per channel), said
where it loses more than `WEIGHT_OFF` or rounds most nonzero values to zero; else, far from the reference's, a file
whose weights or their scale are not this model's. Read at the root cause's node (`qdq_file_why.py`)."""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.quantized.levels import LEVELS, LOST, scale_zero
from cp_debug.bisect.run_state import CandidateState, RunState

WEIGHT_OFF = 0.1  # a stored weight this far from the reference's (rel. RMS): not rounding (INT8's ~0.005, FP8's ~0.03)


def stored_weight(run: RunState, state: CandidateState, probe: str, dq, inits: dict, reader) -> str | None:
    """A weight the file stores quantized, dequantized with the file's own scale, against the reference's weight of
    the same node (the reference graph's node that computes `probe`, its second input): where they differ by more
    than WEIGHT_OFF (relative RMS), the words that say so — its rounding where the file's levels are the reference's
    weight rounded at the file's own scale (per tensor or per channel alike: issue 115), else not this model's; a
    weight rounded so that most of its nonzero values are zero is said as its rounding too, and any rounding where its
    weight alone read in float brought the decision back (`quantized/weight_steps.py`)."""
    from onnx import TensorProto, numpy_helper

    from cp_debug.bisect.findings.quantized import weight_steps

    ref_stage = run.subject.stages[run.probes[probe].stage]  # the reference's graph of the stage
    pm = ref_stage.probe_map()
    t = pm.tensors.get(probe) if pm is not None else None
    model = ref_stage.onnx()
    node = next((n for n in model.graph.node if t in n.output), None)
    ref_inits = {i.name: i for i in model.graph.initializer}
    if node is None or len(node.input) < 2 or node.input[1] not in ref_inits:
        return None
    ref = numpy_helper.to_array(ref_inits[node.input[1]]).astype(np.float64)
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
    params = scale_zero(dq, inits, q.ndim)
    if params is None or q.shape != ref.shape:
        return None
    scale, zero = params
    got = (q - zero) * scale
    norm = float(np.sqrt(np.mean(ref ** 2))) or 1.0
    off = float(np.sqrt(np.mean((got - ref) ** 2))) / norm
    fmt = {TensorProto.INT8: "int8", TensorProto.UINT8: "uint8"}.get(inits[dq.input[0]].data_type)
    run_back = weight_steps.shown(state, dq.input[0])  # its weight alone in float brought the decision back
    rounded = _weight_rounding(ref, q, scale, zero, fmt, off, run_back is not None) if fmt is not None else None
    if rounded and run_back is not None:
        found = state.intervention
        rounded += weight_steps.channels(ref, scale) + weight_steps.run_words(run_back, found.before.ratio,
                                                                              found.metric)
    of = f"{reader.op_type} {reader.name!r}"
    if rounded is not None:  # this model's weights: said where their rounding is worth naming
        return f"the file's {fmt.upper()} weight {dq.input[0]!r} of {of} {rounded}" if rounded else None
    if off <= WEIGHT_OFF:
        return None
    fit = float(np.sum(got * ref) / max(float(np.sum(ref * ref)), 1e-30))  # the best single factor got ≈ fit · ref
    return (f"the file's weight {dq.input[0]!r} of {of} dequantizes to values {fit:.3g}× the "
            f"reference's {node.input[1]!r} (rel. RMS difference {off:.3g}, where its own rounding is a few 1e-3): "
            "the file's weights or their scale are not this model's")


ROUNDED = 0.99  # the share of a file's weight levels within one level of the reference's weight rounded at its scale


def _weight_rounding(ref: np.ndarray, q: np.ndarray, scale: np.ndarray, zero: np.ndarray, fmt: str, off: float,
                     shown: bool = False) -> str | None:
    """The words for a stored weight whose levels `q` are the reference's weight `ref` rounded at the file's own
    `scale` and `zero` (all but a share 1 - ROUNDED within one level: calibrators round and clip alike, some nudge a
    level) — its rounding, per tensor or per channel, with the range that sets the step, where it loses more than
    WEIGHT_OFF (rel. RMS) or rounds most nonzero values to zero (LOST: a range set by an outlier, whose own size
    keeps the RMS small) or where a run showed it (`shown`), else "" (nothing worth naming); None where the levels
    are not the reference's weight."""
    qmin, qmax = LEVELS[fmt]
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.clip(np.rint(ref / scale) + zero, qmin, qmax)
    if not np.all(np.isfinite(own)):
        return None
    close = np.abs(own - q) <= 1
    big = np.maximum(np.abs(own - zero), np.abs(q - zero)) >= 2  # levels a wrong scale moves (0 and ±1 it may not)
    if float(np.mean(close)) < ROUNDED or (big.any() and float(np.mean(close[big])) < ROUNDED):
        return None
    a = np.abs(ref)
    nonzero = a > 0
    zeroed = int(np.count_nonzero(nonzero & (np.abs(own - zero) == 0)))
    lost = zeroed / max(int(np.count_nonzero(nonzero)), 1)
    if off <= WEIGHT_OFF and lost <= LOST and not shown:
        return ""
    median = float(np.median(a[nonzero])) if nonzero.any() else 0.0
    steps = np.broadcast_to(scale, ref.shape)
    if np.size(scale) == 1:
        per = f" / {qmax:g}" if fmt == "int8" else ""  # uint8's step spans its range (max - min) / 255
        how = (f"per tensor at step {float(scale):.3g} (its |w| max {float(a.max()):.3g}{per}, against a "
               f"median nonzero |w| {median:.3g})")
    else:
        how = (f"per channel ({np.size(scale)} scales, steps {float(steps.min()):.3g} to {float(steps.max()):.3g}; "
               f"median nonzero |w| {median:.3g})")
    return (f"is the reference's weight rounded {how}: {zeroed} of its {int(np.count_nonzero(nonzero))} nonzero "
            f"values ({lost:.0%}) round to zero, a rel. RMS rounding error of {off:.3g} — INT8 weight rounding, "
            "this model's weights")

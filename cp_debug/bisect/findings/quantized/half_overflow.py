"""An FP16 overflow between a user's Q/DQ file's pairs (issue 86, item 4), said before any range: where the file holds
FP16 between its pairs (ModelOpt's default high_precision_dtype='fp16'), the candidate's probe is inf/NaN and the
reference's value past 65504, the node computing it overflows, with the scales calibrated on the overflow
(`scale_fault.py`) and ModelOpt's cure tried (`qdq_exclude.fp32_cure`)."""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.quantized.scale_fault import scale_faults
from cp_debug.bisect.run_state import CandidateState, RunState


def half_overflow(run: RunState, state: CandidateState, st, model, probe: str, node) -> str | None:
    """Where the file holds FP16 between its Q/DQ pairs (ModelOpt's default high_precision_dtype='fp16'), the
    candidate's probe is inf/NaN and the reference's value past 65504: the FP16 overflow of `node`, said before any
    range, with ModelOpt's cure tried (`qdq_exclude.fp32_cure`)."""
    from cp_debug.bisect.cures.qdq_exclude import MODELOPT, fp32_cure, producer

    r = state.results.get(probe)
    if r is None or r.diff is None or not (r.diff.inf or r.diff.nan) or not run.holds_half(st) \
            or probe not in run.store:
        return None
    big = float(np.max(np.abs(np.asarray(run.store.get(probe), np.float64))))
    if not big > 65504:
        return None
    how = ", as ModelOpt's default high_precision_dtype='fp16' writes them" if producer(model) == MODELOPT else ""
    text = (f"FP16 overflow in the file: it computes {node.op_type} {node.name!r} in FP16 between its Q/DQ pairs (its "
            f"float parts held in FP16{how}) and the reference's value there reaches |x| = {big:.3g} > 65504")
    faults = scale_faults(model, _downstream_dq(model, node))  # a scale calibrated on the overflow: inf there too
    text += "".join(f"; {f}" for f in faults)
    i = next(k for k, s in enumerate(run.subject.stages) if s.name == st.name)
    try:
        cure = fp32_cure(run, state, i, model, [node])
    except Exception as err:  # noqa: BLE001 - the cure is extra; the finding stands without its trial
        run.warnings.append(f"{state.label}: the file in FP32 was not tried: {err}")
        return text
    return f"{text}; {cure.text()}" + (" (its scales as the file holds them)" if faults else "")


def _downstream_dq(model, node, hops: int = 4) -> list:
    """The DequantizeLinear nodes `node`'s output reaches through one-input ops and Q/DQ pairs (`hops` at most)."""
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    out, front = [], list(node.output[:1])
    for _ in range(hops):
        nxt = []
        for t in front:
            for n in readers.get(t, ()):
                if n.op_type == "DequantizeLinear":
                    out.append(n)
                if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Relu", "Clip", "Cast", "Identity"):
                    nxt += list(n.output[:1])
        front = nxt
    return out

"""A user's Q/DQ file whose scale is no number (issue 86, item 4): a scale the file holds as inf, NaN or zero is said
as what it is, never as a range — ModelOpt stores FP16 scales in its FP16-high-precision mode, and a scale past 65504
(an outlier channel's amax / 448) is inf there, one below float16's smallest subnormal 0: x / inf quantizes to 0 and
0 × inf dequantizes to NaN. Read at the root cause's pairs (`qdq_file_why.py`) and in a root cause's segment where
the probe itself is no quantized tensor (`graph_blame.py`, `half_overflow.py`). So is a finite scale a mask's fill
set (`graph/masks.fill_scale`: torch.onnx's dynamo export's -3.4e38 calibrated into the scores, a scale of 1.33e36):
every value a layer computes rounds to its zero point (`fill_scale_words`)."""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.quantized.levels import LEVELS
from cp_debug.bisect.findings.quantized.levels import qdq_format as _format


def scale_faults(model, nodes: list) -> list[str]:
    """The words for each DequantizeLinear among `nodes` (of `model`) whose scale the file holds as inf, NaN or zero:
    what a root cause's segment reads where the probe itself is no quantized tensor (a coarse level's block)."""
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = []
    for dq in (n for n in nodes if n.op_type == "DequantizeLinear" and len(n.input) > 1):
        fmt = _format(inits.get(dq.input[2]) if len(dq.input) > 2 else None) or "int8"
        q = producer.get(dq.input[0])
        fault = scale_fault(dq, inits, None, fmt, paired=q is not None and q.op_type == "QuantizeLinear")
        if fault is not None:
            reads = next((n for n in model.graph.node if dq.output[0] in n.input), None)
            before = f" before {reads.op_type} {reads.name!r}" if reads else ""
            out.append(f"the file's Q/DQ {dq.name or dq.output[0]!r}{before}: {fault}")
    return out


def scale_fault(dq, inits: dict, value: np.ndarray | None, fmt: str, paired: bool) -> str | None:
    """The words for a DequantizeLinear whose scale the file holds as inf, NaN or zero (in some channels), with the
    scale the reference's values call for (|x| max over the format's largest level) where they are known; None where
    every scale is a positive finite number. `paired`: the DequantizeLinear reads a QuantizeLinear (x / inf is 0, so
    all its values come out NaN); else it reads stored levels (a zero level NaN, the others ±inf)."""
    from onnx import TensorProto, numpy_helper

    if dq.input[1] not in inits:
        return None
    init = inits[dq.input[1]]
    scale = numpy_helper.to_array(init).astype(np.float64).ravel()
    bad = {"inf": np.isinf(scale), "NaN": np.isnan(scale), "0": scale == 0}
    kind = next((k for k, m in bad.items() if m.any()), None)
    if kind is None:  # a finite scale a mask's fill set: said as such
        return fill_scale_words(dq.input[1], scale, value)
    mask = bad[kind]
    stored = {TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16"}.get(init.data_type)
    share = (f" in {int(mask.sum())} of its {mask.size} channel{'s' * (mask.size > 1)}" if mask.size > 1 else "")
    said = f"the scale {dq.input[1]!r} is {kind} in the file{share}"
    wanted = None
    if value is not None and np.size(value):
        a = np.abs(value)
        if mask.size > 1:  # the channels of the bad scales, along the DequantizeLinear's axis
            axis = next((x.i for x in dq.attribute if x.name == "axis"), 1) % value.ndim
            a = np.moveaxis(a, axis, 0)[mask] if a.shape[axis] == mask.size else a
        wanted = float(np.max(a)) / LEVELS[fmt][1]
    there = " there" if share else ""
    calls = f"{wanted:.3g}, the reference's |x| max / {LEVELS[fmt][1]:g}" if wanted is not None else ""
    if kind == "inf":
        infs = np.asarray(value)[np.isinf(value)] if value is not None and np.size(value) else np.zeros(0)
        sign = "±" if (infs < 0).any() and (infs > 0).any() else "-" if (infs < 0).any() else "+"
        cause = (f" (the reference's values reach {sign}inf ({infs.size} of {np.size(value)}): a range calibrated "
                 "over them is infinite)" if infs.size else
                 f" (the FP16 cast of {calls}, overflowed)" if wanted is not None and wanted > 65504 else
                 " (stored in FP16, where a scale past 65504 is inf)" if stored == "FP16" else "")
        what = "NaN" if paired else "NaN (a zero level) or ±inf"
        return f"{said}{cause}: every value it dequantizes{there} is {what}"
    if kind == "NaN":
        return f"{said}: every value it dequantizes{there} is NaN"
    held = f"stored in {stored}; " if stored else ""
    cause = (f" (the FP16 cast of {calls}, flushed to zero)" if wanted is not None and 0 < wanted < 2.0 ** -25 else
             f" ({held}the reference's |x| max / {LEVELS[fmt][1]:g} calls for {wanted:.3g})" if wanted else "")
    return f"{said}{cause}: every value it dequantizes{there} is 0"


def fill_scale_words(name: str, scale: np.ndarray, value: np.ndarray | None) -> str | None:
    """The words for a Q/DQ pair's finite scale `name` a mask's fill set (`graph/masks.fill_scale`), with the
    fill the reference's values hold where they are known; None where no scale is so."""
    from cp_debug.graph.masks import INT8_TOP, MASK_FILL, fill_scale

    if not fill_scale(scale):
        return None
    top = float(np.max(np.abs(scale)))
    held = ""
    if value is not None and np.size(value):
        at = ~(np.abs(value) < MASK_FILL) & ~np.isnan(value)
        held = (f"; the reference's values reach {float(np.min(value)):.3g} ({int(at.sum())} of {np.size(value)} at "
                f"or past ±{MASK_FILL:.0e})") if at.any() else ""
    return (f"the scale {name!r} is {top:.3g} in the file: a range set by a mask's fill ({INT8_TOP} steps "
            f"reach {top * INT8_TOP:.3g}{held}), so every value a layer computes rounds to its zero point and only "
            "the fill is kept")

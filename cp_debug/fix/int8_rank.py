"""fix's INT8 candidates, bisect's readings first (issue 84, item 4: the smallest cure first): the layers whose input a
Clip feeds that ONNX Runtime's ClipQuantFusion drops (leaving the layer out of INT8 takes the QuantizeLinear behind the
Clip away, and the Clip stays), then those whose input or output the quantizer's per-tensor range loses most of — the
reading that names the root cause in bisect (`segment_int8._range_finding`: most nonzero values rounded to zero, or a
share set by outlier channels), the most lost first; then the ranking as it was (`module.rank_int8`). The search
tries the ranked prefixes shortest first, so a one-layer cure found this way costs a handful of runs.

Measured (AMD EPYC, onnxruntime 1.32; issue 84's case, torchvision MobileNetV2 width 1.0 at 96×96, random weights,
one depthwise channel ×100, `fix --torch … -b torch,ort-cpu-int8`): before this and the carried judge, 98.6 s, 69 runs,
11 of 53 layers left out of INT8, the verification on the held-out samples not holding; see the branch's report.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def findings_first(model, values: Sequence[Mapping], calib: Sequence[Mapping], ranked: tuple) -> tuple:
    """`ranked` (module.Candidate, the ranking as it was) with the layers bisect's INT8 readings name moved first:
    the readers of a Clip ONNX Runtime drops, then the layers whose range loses their values (most lost first)."""
    from cp_debug.bisect.findings.segment_int8 import LOST_SHARE, OUTLIER_LOST, _range_finding
    from cp_debug.precision.int8 import clip_drops
    from cp_debug.precision.int8_cache import quantize_int8_cached

    if not calib or not ranked:
        return ranked
    q = quantize_int8_cached(model, [dict(c) for c in calib])
    dropped = {n.output[0] for n in model.graph.node if n.name in clip_drops(q.model)}
    nodes = {n.name: n for n in model.graph.node}
    first, lost = [], {}
    for c in ranked:
        node = nodes[c.name]
        if node.input and node.input[0] in dropped:
            first.append(c)
            continue
        axis = 1 if node.op_type.startswith("Conv") else -1
        for t in (*node.input[:1], *node.output[:1]):
            amax = q.activation_amax.get(t)
            for v in values:
                found = _range_finding(t, v.get(t), float(amax), axis) if amax else None
                f = found(()) if found is not None else None
                if f is not None and (f.lost > LOST_SHARE or (f.outliers and f.lost > OUTLIER_LOST)):
                    lost[c.name] = max(lost.get(c.name, 0.0), f.lost)
    named = sorted((c for c in ranked if c.name in lost and c not in first), key=lambda c: -lost[c.name])
    return tuple(first + named + [c for c in ranked if c not in first and c.name not in lost])

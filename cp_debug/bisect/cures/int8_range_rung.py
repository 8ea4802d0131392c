"""INT8's calibration rung of the cure ladder (issue 84, item 4: per-channel weights → a better calibration range → left
out of INT8, smallest first, each verified): before the finding's readers are left out of INT8, the tensor whose range
loses its values is quantized at a range fitted to it, on the same segment, and judged by the run's judge.

Weights are read per output channel already in every INT8 quantization cp_debug makes (`precision/int8.py`,
per_channel=True), so that rung has nothing to try here; FP8's ladder, whose weights are per tensor, has it
(`segment_fp8.py`). The range: where a few outlier channels set the per-tensor range (`Int8Finding.outliers`), the
largest |x| of the other channels — the outliers saturate there, the others keep their resolution; else, where most
nonzero values round to zero, the 99.99th percentile of the reference's |x|; where the input saturates, this input's
own |x| max. A range not 10% narrower (or wider, for saturation) than the calibrated one is no rung to try.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILE = 99.99
NARROWER = 0.9  # a range this much of the calibrated one or less is worth a run


@dataclass(frozen=True)
class RangeRung:
    tensor: str
    amax: float  # the range tried
    was: float  # the range the segment was calibrated at
    how: str  # where the range comes from, in words

    def text(self) -> str:
        return f"{self.tensor!r} quantized at ±{self.amax:.3g} ({self.how}; calibrated at ±{self.was:.3g})"

    def how_to(self) -> str:
        """The range set in ONNX Runtime's quantizer (its per-tensor overrides; onnxruntime 1.32 takes numpy floats
        there, and fails on Python's)."""
        bounds = f"'rmin': np.float32({-self.amax:.4g}), 'rmax': np.float32({self.amax:.4g})"
        return (f"to calibrate so, ONNX Runtime's quantize_static(..., extra_options={{'TensorQuantOverrides': "
                f"{{{self.tensor!r}: [{{{bounds}}}]}}}})")


def range_rung(finding, value, axis: int) -> RangeRung | None:
    """The range to try for `finding`'s tensor (`segment_int8.Int8Finding`) from the reference's values there, or None
    where none is narrower (or, saturated, wider) than its calibrated range by enough to try."""
    a = np.abs(np.asarray(value, dtype=np.float64))
    if not a.size:
        return None
    if finding.saturated > 1e-4 and a.max() > finding.amax / NARROWER:
        return RangeRung(finding.tensor, float(a.max()), finding.amax, "this input's |x| max")
    if finding.outliers and a.ndim >= 2:
        per = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1).max(axis=1)
        k = finding.outliers[0]
        top = float(np.sort(per)[-k - 1]) if per.size > k else 0.0
        which = f"the {k} outlier channels saturate" if k > 1 else "the outlier channel saturates"
        how = f"the largest |x| of the other channels: {which}"
    else:
        top = float(np.percentile(a, PERCENTILE))
        how = f"the {PERCENTILE:g}th percentile of the reference's |x|"
    return RangeRung(finding.tensor, top, finding.amax, how) if 0 < top <= NARROWER * finding.amax else None


def with_range(qdq, tensor: str, amax: float):
    """The Q/DQ graph `qdq` with every QuantizeLinear of `tensor` (and its DequantizeLinear) at ±amax: a symmetric
    int8 scale of amax / 127, the zero point as it was (onnx-graphsurgeon's edit cycle)."""
    import onnx_graphsurgeon as gs

    from cp_debug.graph.weight_store import import_graph

    graph = import_graph(qdq)
    t = graph.tensors().get(tensor)
    if t is None:
        return qdq
    for k, q in enumerate(c for c in t.outputs if c.op == "QuantizeLinear"):
        old = q.inputs[1]
        shape = np.asarray(old.values).shape if isinstance(old, gs.Constant) else ()
        scale = gs.Constant(f"{old.name}_range{k}", np.full(shape, amax / 127.0, dtype=np.float32))
        q.inputs[1] = scale
        for dq in [c for c in q.outputs[0].outputs if c.op == "DequantizeLinear"]:
            dq.inputs[1] = scale
    graph.cleanup().toposort()
    return gs.export_onnx(graph)

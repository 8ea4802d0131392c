"""A bounded op's range is its own, not an outlier's (issue 115, item 3 of the twelfth stop): rxnmapper's ALBERT in
the built-in INT8 read a Softmax output as "78% of the values round to zero (range ±1 is set by outliers)" — a
probability's [0, 1] is the Softmax's by construction. Its reason now says the mechanism the data shows: most of the
probabilities lie near 0, below half an INT8 step of the op's range, with their median.

The values are a peaked attention's probabilities as ONNX Runtime computes them
(tests/bisect/int8_softmax_attention.py), their range the calibrated one a MinMax calibration of them gives
(their largest, ~1)."""

from __future__ import annotations

import numpy as np
import onnx

from cp_debug.bisect.findings.hints import HintContext, hint_for, int8_range
from cp_debug.bisect.result import ProbeResult
from cp_debug.compare.diff import TensorDiff, default_tolerance


def _probs() -> np.ndarray:
    import onnxruntime as ort

    from tests.bisect.int8_softmax_attention import build, sample

    model = build()
    model.graph.output.append(onnx.helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["probs"], {"x": sample(1)})[0]


def test_a_softmax_range_is_the_ops_own_not_outliers():
    p = _probs()
    rng = int8_range(p, float(p.max()))
    assert rng.rounded_to_zero > 0.5 and rng.median is not None and rng.median < 0.5 * rng.amax / 127
    d = TensorDiff.from_arrays("probs", p, np.round(p * 127 / rng.amax) * rng.amax / 127, default_tolerance("int8"))
    said = hint_for(ProbeResult("probs", d.status, d), HintContext("int8", int8_range=rng, op="Softmax"))
    # before: "(range ±1 is set by outliers); exclude this layer from INT8 (--exclude-int8) or clip the outliers"
    assert "outliers" not in said.replace("not set by outliers", ""), said
    assert "a Softmax's output, in [0, 1] by the op itself" in said, said
    assert f"below half an INT8 step ({0.5 * rng.amax / 127:.3g})" in said and f"{rng.median:.3g}" in said, said
    assert f"{rng.rounded_to_zero:.0%} of the values round to zero" in said, said
    # the values that count apart (above FP32's epsilon of the range: the rest add nothing in FP32 either)
    assert 0 < rng.counted < 1 and rng.counted_zero > 0.5, rng
    assert f"of the {rng.counted:.0%} above FP32's epsilon of the range" in said, said
    assert f"{rng.counted_zero:.0%} round to zero" in said, said
    # an op whose range is no bound of its own (the MatMul's scores): still said as set by outliers
    other = hint_for(ProbeResult("probs", d.status, d), HintContext("int8", int8_range=rng, op="MatMul"))
    assert "is set by outliers" in other, other

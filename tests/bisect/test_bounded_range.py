"""A bounded op's range is its own, not an outlier's (issue 115, item 3 of the twelfth stop): rxnmapper's ALBERT in
the built-in INT8 read a Softmax output as "78% of the values round to zero (range ±1 is set by outliers)" — a
probability's [0, 1] is the Softmax's by construction. Its reason now says the mechanism the data shows: most of the
probabilities lie near 0, below half an INT8 step of the op's range, with their median.

The values are a peaked attention's probabilities as ONNX Runtime computes them
(tests/bisect/int8_softmax_attention.py), their range the calibrated one a MinMax calibration of them gives
(their largest, ~1)."""

from __future__ import annotations

from pathlib import Path

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


def test_the_segments_own_finding_reads_a_bounded_ops_range_as_the_probe_does(tmp_path):
    """`segment_int8`'s finding on the tensor its root's segment first quantizes (the thirteenth stop left it saying
    "a range set by 1 outlier channel of 2048" for an attention sink's probabilities): the Softmax's range, said as
    the probe's reading says it (`hints.bounded_range`), its cure ladder as before."""
    import json

    from tests.bisect.int8_softmax_attention import sink_logits
    from tests.cli_run import cpdebug

    np.savez(tmp_path / "x.npz", x=sink_logits(1))
    calib = []
    for k in range(2):
        np.savez(tmp_path / f"c{k}.npz", x=sink_logits(10 + k))
        calib += ["--calib", tmp_path / f"c{k}.npz"]
    model = f"{Path(__file__).with_name('int8_softmax_attention.py')}:sink"
    proc = cpdebug("bisect", "--torch", model, "--inputs", tmp_path / "x.npz", *calib, "-b", "torch,ort-cpu-int8",
                   "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    root = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-int8"]
    hint = root["hint"]
    assert root["probe"] == "attend" and hint.startswith("INT8 resolution lost at attend"), root
    assert "it reads 'softmax' quantized per tensor at ±" in hint, hint
    assert "a Softmax's output, in [0, 1] by the op itself" in hint and "not set by outliers" in hint, hint
    assert "outlier channel of" not in hint and "a range set by" not in hint, hint  # before: "set by 1 outlier …"
    assert "below half an INT8 step" in hint and "their median |x|" in hint, hint

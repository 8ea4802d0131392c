"""Marking one tensor per run (MarkBisect on real ONNX Runtime sessions) finds the planted layer."""

from __future__ import annotations

import math

import pytest

from cp_debug.bisect.marking import OrtFp32Reference, first_bad_by_marking, probe_order
from cp_debug.compare.diff import Tolerance
from cp_debug.errors import BadInputError
from cp_debug.backends.spec import BackendSpec
from tests.bisect.exported import exported

PLANTED_TENSOR = "/body/body.2/body.2.0/Conv_output_0"


def test_first_bad_tensor_is_the_planted_conv_in_log2_runs():
    model, feed = exported("fp16_planted.py", "fp16_overflow_concat")
    result = first_bad_by_marking(model, BackendSpec.parse("ort-cpu-fp16"), feed)
    n = len(result.probes)
    assert result.probes == probe_order(model) and result.probes[-1] == "output0" and n == 12
    assert result.first_bad == PLANTED_TENSOR
    assert result.last_good == "/body/body.1/body.1.2/Relu_output_0"
    # its own values are finite (ORT runs the conv in float32) but off by FP16 weight rounding at |x| ~ 1e5;
    # the float16 Slice/Concat after it turn them into inf
    assert result.diff.name == PLANTED_TENSOR and result.diff.status == "diverged" and result.diff.ref_absmax > 1e5
    assert result.runs <= math.log2(n) + 2
    assert all(len(step.marked) == 1 for step in result.steps)  # one output marked per run
    assert result.reference_runs == result.runs  # the ORT FP32 reference exposes just the marked tensor too
    by_tensor = {step.marked[0]: step.bad[0] for step in result.steps}
    assert by_tensor[PLANTED_TENSOR] is True and by_tensor[result.last_good] is False
    assert result.to_json()["first_bad"] == PLANTED_TENSOR


def test_given_reference_values_and_k_ary_marking_agree():
    model, feed = exported("fp16_planted.py", "fp16_overflow_concat")
    reference = OrtFp32Reference(model, feed)
    values = reference(probe_order(model))  # every probe at once, one ORT run
    assert reference.runs == 1
    result = first_bad_by_marking(model, BackendSpec.parse("ort-cpu-fp16"), feed, reference=values, per_run=3)
    assert result.first_bad == PLANTED_TENSOR and result.reference_runs == 0
    assert all(1 <= len(step.marked) <= 3 for step in result.steps)
    assert result.runs <= math.ceil(math.log(len(result.probes) + 1, 4))


def test_healthy_model_has_no_bad_tensor():
    model, feed = exported("planted.py", "healthy")
    result = first_bad_by_marking(model, BackendSpec.parse("ort-cpu-fp16"), feed)
    assert result.first_bad is None and result.diff is None
    assert result.runs == math.ceil(math.log2(len(result.probes) + 1))
    assert all(not any(step.bad) for step in result.steps)
    strict = first_bad_by_marking(model, BackendSpec.parse("ort-cpu-fp16"), feed, tol=Tolerance(atol=0.0, rtol=0.0))
    assert strict.first_bad == strict.probes[0]  # FP16 rounding shows from the first tensor on


def test_unknown_probe_and_incomplete_reference_are_one_line_errors():
    model, feed = exported("planted.py", "healthy")
    with pytest.raises(BadInputError, match="unknown ONNX tensor name"):
        first_bad_by_marking(model, BackendSpec.parse("ort-cpu-fp16"), feed, probes=["nope"])
    with pytest.raises(BadInputError, match="reference values lack"):
        first_bad_by_marking(model, BackendSpec.parse("ort-cpu-fp16"), feed, reference={"output0": feed["x"]})

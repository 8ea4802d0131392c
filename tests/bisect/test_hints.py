"""INT8 hints from the reference values against the calibrated range."""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.hints import HintContext, Int8Range, hint_for, int8_range
from cp_debug.bisect.result import ProbeResult
from cp_debug.compare.diff import TensorDiff, default_tolerance


def test_saturation_and_lost_resolution_are_named_with_the_range():
    x = np.concatenate([np.full(990, 1e-4), np.full(10, 50.0)]).astype(np.float32)
    r = int8_range(x, amax=10.0)
    assert r == Int8Range(10.0, 0.01, 0.99)
    tol = default_tolerance("int8")
    d = TensorDiff.from_arrays("conv", x, x * 1.5, tol)
    hint = hint_for(ProbeResult("conv", d.status, d), HintContext("int8", int8_range=r))
    assert "INT8 saturation: 1.00%" in hint and "±10" in hint and "99% of the values round to zero" in hint
    assert int8_range(np.zeros(0, np.float32), 3.0) == Int8Range(3.0, 0.0, 0.0)


def test_the_reason_comes_before_the_precision_preamble():
    x = np.linspace(-1, 1, 1000).astype(np.float32)
    d = TensorDiff.from_arrays("conv", x, x * 1.3, default_tolerance("int8"))
    note = "ort-cpu-int8 did not run int8 throughout: mnet: ORT CPU ran 34 of 52 Conv nodes as int8 kernels"
    hint = hint_for(ProbeResult("conv", d.status, d, d),
                    HintContext("int8", precision_note=note, int8_range=int8_range(x, amax=1.0)))
    assert hint.startswith("INT8 quantisation error of this layer") and hint.endswith(note)
    assert hint.count("did not run int8 throughout") == 1

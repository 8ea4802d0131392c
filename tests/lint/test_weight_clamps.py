"""What an FP16 converter's clamp is, and what it is not (lint/weights.py `_clamped`): every value past one bound
taken to it, the bound beyond float16's plain range; a weight that differs at one value elsewhere is no clamp."""

from __future__ import annotations

import numpy as np

from cp_debug.lint.weights import _clamped


def test_a_clamp_takes_every_value_past_a_converters_bound_and_nothing_else_is_one():
    rng = np.random.default_rng(0)
    w = rng.standard_normal(64) * 0.05
    w[[3, 9]] = [3.1e4, -2.0e4]  # past onnxconverter-common's max_finite_val
    w[5] = 3e-9  # below its min_positive_val
    filed = np.clip(w, -1e4, 1e4).astype(np.float16).astype(np.float64)
    filed[5] = np.float16(1e-7)
    found = _clamped(filed, ("fc.weight", w), "onnx::MatMul_1")
    assert (found.high, found.high_to, found.low, found.low_to) == (2, 1e4, 1, float(np.float16(1e-7)))
    other = w.copy()
    other[[3, 9, 5]] = [0.08, -0.02, 0.01]  # a random MobileNet's weights, and one of them changed by another cause
    changed = other.astype(np.float16).astype(np.float64)
    changed[3] = np.float16(0.031)  # "clamped to ±0.031" was read here before
    assert _clamped(changed, ("conv.weight", other), "onnx::Conv_477") is None
    partly = np.clip(w, -2.5e4, 2.5e4).astype(np.float16).astype(np.float64)  # 3.1e4 taken, 2e4 not: no one bound
    partly[9] = np.float16(-1.5e4)
    assert _clamped(partly, ("fc.weight", w), "onnx::MatMul_1") is None

"""The quantizer switches restore the state they found: nested, after an exception, from a mixed state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cp_debug.errors import BadInputError
from cp_debug.quant.quantizers import (calibrated_on, enable_calibrated, insert_quantizers, only_quantized,
                                       plan_quantization, quantized_layers, quantizer_state, without_quantizers)


def _model() -> nn.Module:
    """Three quantized convs (0, 2, 4); conv 4 calibrated on its weights only."""
    torch.manual_seed(0)
    m = nn.Sequential(*[nn.Conv2d(2, 2, 1) if i % 2 == 0 else nn.ReLU() for i in range(5)])
    insert_quantizers(m, plan_quantization(m))
    for name, layer in quantized_layers(m).items():
        layer._weight_quantizer.set_amax(torch.tensor(1.0))
        if name != "4":
            layer._input_quantizer.set_amax(torch.tensor(2.0))
    return m


def _state(m: nn.Module) -> dict[str, tuple[bool, bool]]:
    return {n: (q._input_quantizer.enabled, q._weight_quantizer.enabled) for n, q in quantized_layers(m).items()}


def _mixed(m: nn.Module) -> dict[str, tuple[bool, bool]]:
    """Layer 0 on, layer 2 off, layer 4 with only its weight quantizer on."""
    layers = quantized_layers(m)
    layers["2"]._input_quantizer.enabled = layers["2"]._weight_quantizer.enabled = False
    layers["4"]._input_quantizer.enabled = False
    return _state(m)


def test_only_quantized_sets_exactly_the_set_and_restores_a_mixed_state():
    m = _model()
    found = _mixed(m)
    assert found == {"0": (True, True), "2": (False, False), "4": (False, True)}
    with only_quantized(m, ["2"]):
        assert _state(m) == {"0": (False, False), "2": (True, True), "4": (False, False)}
    assert _state(m) == found  # not "all on": what it found


def test_nested_switches_restore_each_level():
    m = _model()
    found = _mixed(m)
    with only_quantized(m, ["0", "2"]):
        inner_found = _state(m)
        with without_quantizers(m, ["2"]):
            assert _state(m) == {"0": (True, True), "2": (False, False), "4": (False, False)}
            with only_quantized(m, []):
                assert not any(any(v) for v in _state(m).values())
            assert _state(m)["0"] == (True, True)
        assert _state(m) == inner_found
    assert _state(m) == found


def test_an_exception_inside_restores_the_state():
    m = _model()
    found = _mixed(m)
    with pytest.raises(RuntimeError, match="boom"):
        with only_quantized(m, ["4"]):
            assert _state(m)["4"] == (True, True)
            raise RuntimeError("boom")
    assert _state(m) == found
    with pytest.raises(BadInputError, match="not quantized layers: 1"):
        with only_quantized(m, ["1"]):
            pass
    with pytest.raises(BadInputError, match="not quantized layers: 3"):
        with without_quantizers(m, ["3"]):
            pass
    assert _state(m) == found  # a refused switch changes nothing


def test_without_quantizers_leaves_the_others_as_found_and_the_output_fp32():
    m = _model().eval()
    enable_calibrated(m)  # layer 4's input quantizer has no amax: off
    x = torch.randn(1, 2, 4, 4)
    with quantizer_state(m):
        for q in quantized_layers(m).values():
            q._input_quantizer.enabled = q._weight_quantizer.enabled = False
        fp32 = m(x)
    quantized = m(x)
    with without_quantizers(m, ["0", "2", "4"]):
        torch.testing.assert_close(m(x), fp32)
    with without_quantizers(m, ["2"]):
        assert _state(m) == {"0": (True, True), "2": (False, False), "4": (False, True)}
    torch.testing.assert_close(m(x), quantized)


def test_calibrated_on_turns_on_what_holds_an_amax_and_restores():
    m = _model()
    for q in quantized_layers(m).values():
        q._input_quantizer.enabled = q._weight_quantizer.enabled = False
    with calibrated_on(m) as n:
        assert n == 3 and _state(m) == {"0": (True, True), "2": (True, True), "4": (False, True)}
    assert not any(any(v) for v in _state(m).values())

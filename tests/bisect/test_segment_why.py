"""The op-level findings of `segment_why.py` on small graphs: each one only where the data meets its condition."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from onnx import TensorProto, helper

from cp_debug.bisect.segment_why import _collapsed, _long_reduction, _overflow

ONNX_ONLY = SimpleNamespace(module=None)  # a stage without its torch module: modules from node metadata only


def _graph(op: str, n: int, **attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    node = helper.make_node(op, ["x"], ["y"], name=f"the_{op.lower()}", **attrs)
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), ir_version=8)


def test_a_softmax_over_more_than_2_15_keys_is_a_long_reduction_and_a_short_one_is_not():
    long = _graph("Softmax", 40000, axis=-1)
    ref = {"x": np.zeros((1, 40000), np.float32)}
    found = _long_reduction(long, ref, ONNX_ONLY)
    assert found is not None and found.node == "the_softmax" and found.value == 40000 and found.kind == "reduction"
    assert _long_reduction(_graph("Softmax", 1000, axis=-1), {"x": np.zeros((1, 1000), np.float32)}, ONNX_ONLY) is None


def test_an_output_all_zero_where_the_reference_is_not_is_a_collapse_and_values_in_range_are_no_overflow():
    g = _graph("Relu", 8)
    ref = {"y": np.full((1, 8), 3.0, np.float32)}
    found = _collapsed(g, ref, {"y": np.zeros((1, 8), np.float16)}, ONNX_ONLY)
    assert found is not None and found.kind == "zero" and found.value == 3.0
    assert _collapsed(g, ref, {"y": np.full((1, 8), 3.0, np.float16)}, ONNX_ONLY) is None
    assert _overflow(g, ref, ONNX_ONLY) == (None, ())
    big = {"y": np.full((1, 8), 7e4, np.float32)}
    finding, keep = _overflow(g, big, ONNX_ONLY)
    assert finding.kind == "overflow" and finding.value == 7e4 and keep == ("the_relu",)

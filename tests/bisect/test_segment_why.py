"""The op-level findings of `segment_why.py` on small graphs: each one only where the data meets its condition."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from onnx import TensorProto, helper

from cp_debug.bisect.findings.op_findings import find_collapse, find_long_reduction, find_overflow
from cp_debug.bisect.findings.segment_why import SegmentWhy

# a stage without its torch module: modules from node metadata only
ONNX_ONLY = SimpleNamespace(module=None, has_module=False)


def _graph(op: str, n: int, **attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    node = helper.make_node(op, ["x"], ["y"], name=f"the_{op.lower()}", **attrs)
    # IR 8 / opset 17: what every onnxruntime the suite meets reads (1.30 refuses onnx's newest opset)
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), ir_version=8,
                             opset_imports=[helper.make_opsetid("", 17)])


def _softmax_both_ways(n: int, seed: int = 0):
    """A softmax over `n` keys of near-equal logits (a cross-attention over mostly empty BEV cells): the graph, the
    FP32 reference's values and ONNX Runtime's FP16 candidate's (float16 storage emulated, as the bisect runs it)."""
    from cp_debug.backends.factory import make_runner
    from cp_debug.backends.spec import BackendSpec

    g = _graph("Softmax", n, axis=-1)
    x = np.random.default_rng(seed).normal(0.0, 0.1, (1, n)).astype(np.float32)
    logits = x - x.max()
    e = np.exp(logits)
    ref = {"x": x, "y": (e / e.sum()).astype(np.float32)}
    with make_runner(BackendSpec.parse("ort-cpu-fp16"), onnx_model=g, spinning=False) as r:
        cand = {"y": np.asarray(r.infer({"x": x})["y"])}
    return g, ref, cand


def test_a_softmax_over_more_than_2_15_keys_is_named_with_its_count_and_measured_error_and_a_short_one_is_not():
    g, ref, cand = _softmax_both_ways(36864)  # the T4 grid's 192 x 192 cells
    found = find_long_reduction(g, ref, cand, ONNX_ONLY)
    assert found is not None and found.node == "the_softmax" and found.value == 36864 and found.kind == "reduction"
    assert found.rel_rmse > 2.0 ** -11  # the harm is measured, not assumed from the count
    why = SegmentWhy(found, ("the_softmax",), None, note="a unit test").text()
    assert "FP16 reduction over 36864 elements" in why and f"rel. RMSE {found.rel_rmse:.3g}" in why
    g, ref, cand = _softmax_both_ways(1024)  # transfusion-tiny's 32 x 32 cells: never a long reduction
    assert find_long_reduction(g, ref, cand, ONNX_ONLY) is None
    g, ref, _ = _softmax_both_ways(40000)
    assert find_long_reduction(g, ref, {"y": ref["y"].copy()}, ONNX_ONLY) is None  # long, but computed well: no finding


def test_an_output_all_zero_where_the_reference_is_not_is_a_collapse_and_values_in_range_are_nofind_overflow():
    g = _graph("Relu", 8)
    ref = {"y": np.full((1, 8), 3.0, np.float32)}
    found = find_collapse(g, ref, {"y": np.zeros((1, 8), np.float16)}, ONNX_ONLY)
    assert found is not None and found.kind == "zero" and found.value == 3.0
    assert find_collapse(g, ref, {"y": np.full((1, 8), 3.0, np.float16)}, ONNX_ONLY) is None
    assert find_overflow(g, ref, ONNX_ONLY) == (None, ())
    big = {"y": np.full((1, 8), 7e4, np.float32)}
    finding, keep = find_overflow(g, big, ONNX_ONLY)
    assert finding.kind == "overflow" and finding.value == 7e4 and keep == ("the_relu",)


def _sum_over(axis: int):
    """ReduceSum of a 40000 × 2 tensor over `axis`, its axes an input (opset 13 on)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [40000, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [axis])
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="the_sum")
    return helper.make_model(helper.make_graph([node], "g", [x], [y], [axes]), ir_version=8,
                             opset_imports=[helper.make_opsetid("", 17)])


def test_a_reduce_ops_length_is_what_it_reduces_when_its_axes_are_an_input():
    """From opset 13 (ReduceSum) / 18 (the others) the axes are an input, not an attribute: a sum over the 2
    columns of a 40000 × 2 tensor is no long reduction, a sum over its 40000 rows is — the candidate as far off."""
    xs = np.random.default_rng(0).normal(size=(40000, 2)).astype(np.float32)
    for axis, length in ((1, None), (0, 40000)):
        ref = {"x": xs, "y": xs.sum(axis=axis)}
        found = find_long_reduction(_sum_over(axis), ref, {"y": ref["y"] * 1.01}, ONNX_ONLY)
        if length is None:
            assert found is None
        else:
            assert found is not None and found.value == length and found.kind == "reduction"

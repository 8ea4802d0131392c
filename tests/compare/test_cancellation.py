"""A centering mean (`x - mean(x)`, a LayerNorm decomposed as TorchScript's opset-14 export writes it) is judged on
its input's scale; a cancellation used as it is, and a value that is no cancellation, keep their own budget."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from cp_debug.compare.cancellation import cancelled, centering
from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.noise import Judgement, Outcome


def _graph(centered: bool):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 64])
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1]),
             helper.make_node("Sub", ["x", "mean"] if centered else ["mean", "x"], ["y"])]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


def test_a_mean_taken_back_from_what_it_averages_is_judged_on_that_scale():
    assert centering(_graph(True), "mean") == "x"
    assert centering(_graph(False), "mean") is None  # mean - x: no centering of x
    assert centering(_graph(True), "y") is None  # a Sub's output is no mean

    rng = np.random.default_rng(0)
    z = rng.standard_normal((1, 4, 64))
    x = (z - z.mean(-1, keepdims=True) + 0.002).astype(np.float32)  # a residual whose mean is near zero
    x_cand = x + rng.standard_normal(x.shape).astype(np.float32) * 0.01  # 1 % rounding: within INT8's 0.1 budget
    mean, mean_cand = x.mean(-1, keepdims=True), x_cand.mean(-1, keepdims=True)
    d_in, d_out = TensorDiff.from_arrays("x", x, x_cand), TensorDiff.from_arrays("mean", mean, mean_cand)
    own_in = Judgement(Outcome.WITHIN_PRECISION, 0.1, d_in.rel_rmse / 0.1, "")
    own_out = Judgement(Outcome.DEGRADED, 0.1, d_out.rel_rmse / 0.1, "")
    assert d_out.rel_rmse > 0.1  # the mean (~500× smaller than x) off by more than its own budget
    j = cancelled(own_out, d_out, "x", d_in, own_in, "int8")
    assert j.outcome is Outcome.WITHIN_PRECISION and j.carried_from == "x" and "cancels" in j.reason
    # the input beyond its own budget: nothing to carry
    assert cancelled(own_out, d_out, "x", d_in, Judgement(Outcome.DEGRADED, 0.1, 2.0, ""), "int8") is own_out
    # no cancellation (the output as large as its input): its own budget stays
    same = TensorDiff.from_arrays("x2", x, x_cand * 1.5)
    assert cancelled(Judgement(Outcome.DEGRADED, 0.1, 5.0, ""), same, "x", d_in, own_in, "int8").noise_ratio == 5.0

"""graph/masks.py on hand-built graphs: what only reaches a softmax, a comparison or a Where's condition is a mask;
a value multiplied, normalised or leaving the graph is not; a saturation is told from any other Inf/NaN."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from cp_debug.graph.masks import mask_tensors, saturated_mask


def _graph(nodes, outputs):
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4]) for n in ("logits", "fill", "other")]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4]) for n in outputs]
    return helper.make_model(helper.make_graph(nodes, "g", inputs, outs))


def test_a_fill_added_to_logits_before_a_softmax_is_a_mask_and_a_multiplied_one_is_not():
    model = _graph([helper.make_node("Add", ["logits", "fill"], ["masked"]),
                    helper.make_node("Softmax", ["masked"], ["probs"]),
                    helper.make_node("Mul", ["other", "fill"], ["scaled"]),
                    helper.make_node("Relu", ["scaled"], ["out2"])], ["probs", "out2"])
    masks = mask_tensors(model)
    assert "masked" in masks
    assert "scaled" not in masks and "probs" not in masks  # read by a Relu; a graph output


def test_a_saturation_is_minus_inf_where_the_reference_is_beyond_fp16_and_nothing_else():
    ref = np.array([1.0, -3.4e38, -7e4, 2.0], dtype=np.float32)
    assert saturated_mask(ref, np.array([1.0, -np.inf, -np.inf, 2.0], np.float16)).tolist() == [False, True, True,
                                                                                                   False]
    assert saturated_mask(ref, np.array([1.0, -np.inf, np.nan, 2.0], np.float16)) is None  # a NaN is no saturation
    assert saturated_mask(ref, np.array([-np.inf, -np.inf, -np.inf, 2.0], np.float16)) is None  # 1.0 -> -inf
    assert saturated_mask(ref, ref.astype(np.float32)) is None  # nothing non-finite: nothing to explain
    onnx.checker.check_model(_graph([helper.make_node("Softmax", ["logits"], ["p"])], ["p"]))


def test_an_infinity_the_reference_holds_too_is_no_saturation_and_no_error():
    """transformers' SDPA path exported by TorchScript fills masked logits with -inf in FP32 itself: the candidate's
    -inf there is the reference's value, not a saturation to explain, and the comparison counts no Inf."""
    from cp_debug.compare.diff import TensorDiff

    ref = np.array([0.5, -np.inf, -np.inf, 2.0], dtype=np.float32)
    test = ref.astype(np.float16)
    assert saturated_mask(ref, test) is None
    same = TensorDiff.from_arrays("masked", ref, test)
    assert (same.inf, same.nan, same.status) == (0, 0, "ok") and same.max_abs < 1e-3
    flipped = test.copy()
    flipped[1] = np.inf  # +inf where the reference holds -inf: the candidate's own
    wrong = TensorDiff.from_arrays("masked", ref, flipped)
    assert (wrong.inf, wrong.status) == (1, "inf")
    lost = test.astype(np.float32)
    lost[2] = 0.0  # finite where the reference is -inf: an error the share beyond tolerance counts
    assert TensorDiff.from_arrays("masked", ref, lost).status == "diverged"
    mixed = np.array([-3.4e38, -np.inf], np.float32)  # finfo.min fill beside the reference's own -inf
    assert saturated_mask(mixed, mixed.astype(np.float16)).tolist() == [True, False]

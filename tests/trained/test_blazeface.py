"""MediaPipe's BlazeFace (tests/trained/blazeface.py, its tflite converted by tflite2onnx, tried as a new user):
a user's `quantize_static` file (Q/DQ, its defaults, calibrated on 20 drawn faces) judged at the application's
decision, a face found at MediaPipe's 0.5.

By hand: the file loses the face in image 0 (its best anchor 0.15 against 0.82); no node left out alone brings it
back, `nodes_to_exclude=['depthwise_conv2d_15', 'conv2d_16']` does — channels 38 and 88 of `depthwise_conv2d_15`'s
output reach |x| 429 where the others' median is 1.38, and its per-tensor pair rounds 76% of `conv2d_16`'s input to
zero. cp_debug named that pair, its mechanism and that set, and said "tried and not enough" (its outputs 1.7× the
budget) without a word of the face it gives back. "['conv2d_16'] alone" was tried by removing the output pair
`depthwise_conv2d_15` writes, a pair ONNX Runtime's quantizer keeps when only the reader is left out — a Conv's
output is quantized with the Conv —: the face came back in the surgery and not in the quantizer's file; now the
surgery keeps it (`qdq_removal.output_paired`, docs/trained-models.md, eleventh stop)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # 28 faces drawn, four quantizations and a bisect with its interventions (~40 s)


def _quantized(src, out, calib, exclude=()):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QDQ, nodes_to_exclude=list(exclude))
    return out


def test_the_outlier_channels_pair_its_cure_back_at_the_decision_and_a_reader_alone_as_the_quantizer_leaves_it(
        tmp_path):
    import onnxruntime as ort

    from tests.trained.blazeface import MODEL, draw, found_metric

    x = draw(0)
    calib = [draw(i) for i in range(100, 120)]

    def run(path):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(zip(["regressors", "classificators"], s.run(None, {"input": x})))

    ref = run(MODEL)
    (tmp_path / "q").mkdir()
    user = _quantized(MODEL, tmp_path / "q" / "model.onnx", calib)
    # by hand: the face lost; the pair's two nodes left out give it back, the reader alone does not
    assert found_metric(run(user), ref) == 0.0
    assert found_metric(run(_quantized(MODEL, tmp_path / "both.onnx", calib,
                                       ("depthwise_conv2d_15", "conv2d_16"))), ref) == 1.0
    assert found_metric(run(_quantized(MODEL, tmp_path / "one.onnx", calib, ("conv2d_16",))), ref) == 0.0

    np.savez(tmp_path / "x.npz", input=x)
    proc = cpdebug("bisect", "--onnx", MODEL, "--inputs", tmp_path / "x.npz", "-b", f"ort-cpu,ort@{tmp_path / 'q'}",
                   "--metric", f"{MODEL.parents[2] / 'trained' / 'blazeface.py'}:found_metric", "--json",
                   tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    hint = report["root_cause"][report["candidates"][0]]["hint"]
    assert "channels 38, 88 of Conv 'depthwise_conv2d_15''s output" in hint, hint
    assert "nodes_to_exclude=['depthwise_conv2d_15', 'conv2d_16']" in hint, hint
    # before: "…, 1.7× int8's budget;" — the decision it gives back unsaid
    cure = hint[hint.index("nodes_to_exclude=['depthwise_conv2d_15', 'conv2d_16']"):]
    assert "every decision back (1 moved by the file)" in cure.split("alone was not enough")[0], hint
    # the smaller set tried as the quantizer leaves it: `quantize_static(nodes_to_exclude=['conv2d_16'])` keeps
    # `depthwise_conv2d_15`'s output pair (a Conv's output is quantized with the Conv), the face stays lost (by hand
    # above); before, the surgery removed that pair and the face came back in it alone
    smaller = cure[cure.index("['conv2d_16'] alone was not enough"):].split(");")[0]
    assert "1 decision(s) still flipped" in smaller, hint

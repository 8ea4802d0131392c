"""Weights that cancel over an offset input (issue 115, `findings/quantized/cancel.py`), on a graph made here: a Conv
whose 32 filters each sum exactly to zero (DC-free, as openwakeword's trained first Conv's are) reads an input whose
mean is 200 (noise of 0.5 around it). INT8's rounding of each weight is small, but it leaves each filter a sum that the
offset multiplies into every output of its channel: the Conv's output is off by more than its whole signal. The
reason is said for the built-in INT8 (the weights rounded as it quantizes them) and for a user's Q/DQ file made with
ONNX Runtime's `quantize_static` per channel (`ort@DIR`: the file's own levels dequantized at its own scales, against
the reference's weights). The twin whose filters do not cancel (each shifted by 0.5: the offset passes through in
FP32 too) is within INT8's precision and names nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug

OFFSET = 200.0


def _files(tmp, zero_sum: bool):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    w = rng.standard_normal((32, 4, 3, 3))
    w = w - w.mean(axis=(1, 2, 3), keepdims=True) if zero_sum else w + 0.5
    w2 = rng.standard_normal((8, 32, 1, 1)) * 0.3
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "cancel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 14, 14])],
                              [numpy_helper.from_array(w.astype(np.float32), "w1"),
                               numpy_helper.from_array(w2.astype(np.float32), "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp / "m.onnx")
    xs = [(OFFSET + 0.5 * rng.standard_normal((1, 4, 16, 16))).astype(np.float32) for _ in range(5)]
    np.savez(tmp / "x.npz", x=xs[0])
    np.savez(tmp / "c.npz", x=np.concatenate(xs[1:]))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"x": c} for c in xs[1:])

        def get_next(self):
            return next(self.it, None)

    (tmp / "q").mkdir()
    quantize_static(str(tmp / "m.onnx"), str(tmp / "q" / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    extra_options={"WeightSymmetric": True})
    return tmp


def _bisect(tmp, candidate: str):
    proc = cpdebug("bisect", "--onnx", tmp / "m.onnx", "--inputs", tmp / "x.npz", "--calib", tmp / "c.npz", "-b",
                   f"ort-cpu,{candidate}", "--json", tmp / "r.json", "--quiet")
    return proc, json.loads((tmp / "r.json").read_text())


@pytest.mark.parametrize("candidate", ["ort-cpu-int8", "ort@{q}"])
def test_weights_that_cancel_over_an_offset_are_said(tmp_path, candidate):
    tmp = _files(tmp_path, zero_sum=True)
    label = candidate.format(q=tmp / "q")
    proc, report = _bisect(tmp, label)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = report["root_cause"][label]
    assert cause["probe"] == "c1", cause
    assert "its weights cancel: 32 of 32 filters of Conv 'conv1'" in cause["hint"], cause["hint"]
    assert "fed an input whose mean is 200" in cause["hint"], cause["hint"]
    whose = "the file's own INT8 rounding" if label.startswith("ort@") else "INT8's rounding"
    assert whose in cause["hint"], cause["hint"]
    leak = float(cause["hint"].split("into every output of its channel: up to ")[1].split(",")[0])
    own = float(cause["hint"].split("against the layer's own error ")[1].split(" ")[0])
    assert leak >= 0.25 * own, cause["hint"]  # the leak is a large part of the layer's own error


def test_filters_that_do_not_cancel_name_nothing(tmp_path):
    tmp = _files(tmp_path, zero_sum=False)
    proc, report = _bisect(tmp, f"ort@{tmp / 'q'}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "its weights cancel" not in json.dumps(report)

"""An ONNX file ORT's `quantize_dynamic` wrote (ddddocr's captcha reader ships one: ConvInteger, a
DynamicQuantizeLSTM), bisected in FP16 (issue 115: no false alarm on a healthy candidate). Each int32 accumulator is
dequantized by a Cast and a Mul by (input scale × weight scale); the accumulator passes 65504 and the scale lies near
float16's smallest subnormal, so the conversion keeps both in FP32 — in every lockstep segment too, where the Cast
and its accumulator are cut apart: ddddocr was "diverged … FP16 NaN/Inf first made at Mul
'Conv_3_quant_output_scale_mul'", exit 1, where its users' FP16 file reads every captcha as FP32 does."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug


def test_a_dynamically_quantized_conv_net_in_fp16_is_within_precision(tmp_path):
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.quant_utils import QuantType

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(8, 16, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.05, size=(4, 8, 3, 3)).astype(np.float32), "w2")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
                           helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
                           helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
                           helper.make_node("Sigmoid", ["c2"], ["y"], name="sig")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "f.onnx")
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), weight_type=QuantType.QUInt8)
    np.savez(tmp_path / "x.npz", x=rng.uniform(0, 4, size=(1, 16, 8, 8)).astype(np.float32))
    proc = cpdebug("bisect", "--onnx", tmp_path / "q.onnx", "--inputs", tmp_path / "x.npz",
                   "-b", "ort-cpu,ort-cpu-fp16", "--json", tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 0, (report["outcomes"], proc.stdout[-2000:], proc.stderr[-2000:])
    assert report["outcomes"] == {"ort-cpu-fp16": "within_precision"}

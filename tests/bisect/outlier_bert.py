"""The tool-files BERT with two outlier channels, and its per-tensor INT8 file by ONNX Runtime's `quantize_static`
(issue 117, item 3: one depth for one fault): `--torch tests/bisect/outlier_bert.py:build` and `--onnx` the FP32 file
it exports, each against the INT8 file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "tool_files"


def build():
    """Layer 0's intermediate.dense writes channels 0 and 1 ×1000 (through the GELU), its output.dense reads them
    /1000: in FP32 nearly the same function; per-tensor INT8 of the GELU's output clips them (a range calibrated
    without them) — output.dense 4.5× int8's budget on its own, its block's output (LayerNorm after the residual)
    0.3×."""
    import torch

    sys.path.insert(0, str(DATA))
    import models

    net, inputs = models.build("bert", "healthy")
    p = dict(net.named_parameters())
    with torch.no_grad():
        for c in (0, 1):
            p["bert.encoder.layer.0.intermediate.dense.weight"][c] *= 1000.0
            p["bert.encoder.layer.0.intermediate.dense.bias"][c] = abs(
                p["bert.encoder.layer.0.intermediate.dense.bias"][c]) * 1000.0 + 500.0
            p["bert.encoder.layer.0.output.dense.weight"][:, c] /= 1000.0
    return net, inputs


def write(folder: Path) -> tuple[Path, Path]:
    """(the FP32 ONNX file, the folder of its INT8 file): exported by the TorchScript exporter as the tools' own
    corpus was, quantized by `quantize_static` (QDQ, per tensor, int8) on the stored calibration samples."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    net, _ = build()
    feed = np.load(DATA / "bert_inputs.npz")
    names = list(feed.keys())
    fp32, int8 = folder / "fp32.onnx", folder / "int8"
    int8.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, tuple(torch.as_tensor(feed[k]) for k in names), str(fp32), input_names=names,
                      output_names=["last_hidden_state"], opset_version=17, dynamo=False)
    calib = np.load(DATA / "bert_calib.npz")

    class Samples(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{k: calib[k][i:i + 1] for k in names} for i in range(calib[names[0]].shape[0])])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32), str(int8 / "model.onnx"), Samples(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=False)
    return fp32, int8

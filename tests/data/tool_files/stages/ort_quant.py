"""Stage (ortquant venv): onnxruntime.quantization's quantize_dynamic or quantize_static (QDQ or QOperator).

Args: {"op": "dynamic"|"static", "src": fp32.onnx, "out": path, "format": "QDQ"|"QOperator", "calib": npz}.
quantize_dynamic keeps its defaults but for QUInt8 weights (per-tensor, as its default); quantize_static reads
the calibration .npz one sample at a time (its first axis), with every other argument left at its default.
"""

from __future__ import annotations

from pathlib import Path

import _stage
import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)

a = _stage.args()
Path(a["out"]).parent.mkdir(parents=True, exist_ok=True)


class NpzReader(CalibrationDataReader):
    """The calibration .npz as quantize_static reads it: one {input name: array[1, ...]} per sample."""

    def __init__(self, path: str):
        data = np.load(path)
        n = len(data[data.files[0]])
        self.samples = iter([{k: data[k][i:i + 1] for k in data.files} for i in range(n)])

    def get_next(self):
        return next(self.samples, None)


with _stage.Recorder() as rec:
    if a["op"] == "dynamic":
        quantize_dynamic(a["src"], a["out"], weight_type=QuantType.QUInt8)
        call = "onnxruntime.quantization.quantize_dynamic(src, out, weight_type=QuantType.QUInt8)"
    else:
        fmt = getattr(QuantFormat, a["format"])
        quantize_static(a["src"], a["out"], NpzReader(a["calib"]), quant_format=fmt)
        call = (f"onnxruntime.quantization.quantize_static(src, out, <reader over {Path(a['calib']).name}, 8 "
                f"samples>, quant_format=QuantFormat.{a['format']})")
_stage.result(call=call, versions=_stage.versions("onnxruntime", "onnx", "numpy"), warnings=rec.messages,
              files=[a["out"]])

"""Stage (modelopt venv): NVIDIA ModelOpt's modelopt.onnx.quantization.quantize, INT8 or FP8, on the CPU.

Args: {"src": fp32.onnx, "out": path, "mode": "int8"|"fp8", "calib": npz}. The calibration data is the .npz as a
{input name: batch} dict; calibration_eps=["cpu"] because this machine has no GPU; everything else is default
(high_precision_dtype='fp16' among them: the layers ModelOpt leaves unquantized are written in FP16).
"""

from __future__ import annotations

from pathlib import Path

import _stage
import numpy as np

a = _stage.args()
Path(a["out"]).parent.mkdir(parents=True, exist_ok=True)
data = np.load(a["calib"])
calib = {k: data[k] for k in data.files}
with _stage.Recorder() as rec:
    from modelopt.onnx.quantization import quantize
    quantize(a["src"], quantize_mode=a["mode"], calibration_data=calib, calibration_eps=["cpu"],
             output_path=a["out"])
call = (f"modelopt.onnx.quantization.quantize(src, quantize_mode={a['mode']!r}, calibration_data=<dict of "
        f"{Path(a['calib']).name}>, calibration_eps=['cpu'], output_path=out)")
_stage.result(call=call, versions=_stage.versions("nvidia-modelopt", "onnx", "onnxruntime", "onnxruntime-gpu",
                                                  "onnxslim", "onnx-graphsurgeon", "torch"),
              warnings=rec.messages, files=[a["out"]])

"""Stage (onnxconverter venv): onnxconverter-common's float16.convert_float_to_float16 with its defaults, or
with keep_io_types=True. Its UserWarnings (weights clamped to the FP16 range) are the point: they are recorded.

Args: {"src": fp32.onnx, "out": path, "keep_io_types": bool}. onnx.save with its defaults, as a user would.
"""

from __future__ import annotations

from pathlib import Path

import _stage
import onnx
from onnxconverter_common import float16

a = _stage.args()
Path(a["out"]).parent.mkdir(parents=True, exist_ok=True)
model = onnx.load(a["src"])
with _stage.Recorder() as rec:
    if a["keep_io_types"]:
        fp16 = float16.convert_float_to_float16(model, keep_io_types=True)
        call = "onnxconverter_common.float16.convert_float_to_float16(onnx.load(src), keep_io_types=True)"
    else:
        fp16 = float16.convert_float_to_float16(model)
        call = "onnxconverter_common.float16.convert_float_to_float16(onnx.load(src))"
onnx.save(fp16, a["out"])
_stage.result(call=call + "; onnx.save(model, out)",
              versions=_stage.versions("onnxconverter-common", "onnx", "onnxruntime", "numpy"),
              warnings=rec.messages, files=[a["out"]])

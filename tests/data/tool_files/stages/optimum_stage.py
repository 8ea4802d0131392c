"""Stage (optimum venv): optimum's ONNX exporter on the tiny BERT, or its ORTQuantizer (dynamic) on that export.

Args: {"op": "export", "build": "build_bert"|"build_bert_planted", "out_dir": dir} or {"op": "quantize",
"src": model.onnx, "out_dir": dir}. The export saves the stored weights as a Hugging Face checkpoint in a
temporary folder (save_pretrained, random weights, nothing downloaded) and runs optimum.exporters.onnx.main_export
offline on it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import _stage

os.environ["HF_HUB_OFFLINE"] = "1"
a = _stage.args()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
out_dir = Path(a["out_dir"])
out_dir.mkdir(parents=True, exist_ok=True)
dists = ("optimum", "optimum-onnx", "transformers", "torch", "onnx", "onnxruntime")

if a["op"] == "export":
    import models
    from optimum.exporters.onnx import main_export
    module, _ = getattr(models, a["build"])()
    with tempfile.TemporaryDirectory() as tmp:
        module.bert.save_pretrained(tmp)
        with _stage.Recorder() as rec:
            main_export(tmp, output=str(out_dir), task="feature-extraction", opset=a.get("opset", 14),
                        device="cpu", no_post_process=False, do_validation=True)
    call = (f"optimum.exporters.onnx.main_export(<save_pretrained folder>, output=..., task='feature-extraction', "
            f"opset={a.get('opset', 14)}, device='cpu')")
    kept = [str(out_dir / "model.onnx")]
    for f in out_dir.iterdir():
        if f.name != "model.onnx":
            f.unlink() if f.is_file() else shutil.rmtree(f)
else:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(a["src"], Path(tmp) / "model.onnx")
        with _stage.Recorder() as rec:
            quantizer = ORTQuantizer.from_pretrained(tmp, file_name="model.onnx")
            qconfig = AutoQuantizationConfig.avx512_vnni(is_static=False)
            quantizer.quantize(save_dir=tmp + "/q", quantization_config=qconfig)
        shutil.copy(Path(tmp) / "q" / "model_quantized.onnx", out_dir / "model_quantized.onnx")
    call = ("ORTQuantizer.from_pretrained(dir, file_name='model.onnx').quantize(save_dir=..., quantization_config="
            f"AutoQuantizationConfig.avx512_vnni(is_static=False))  # {qconfig!r}")
    kept = [str(out_dir / "model_quantized.onnx")]
_stage.result(call=call, versions=_stage.versions(*dists), warnings=rec.messages, files=kept)

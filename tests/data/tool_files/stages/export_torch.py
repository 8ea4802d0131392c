"""Stage: export a model of models.py with torch.onnx.export, TorchScript (dynamo=False) or dynamo (dynamo=True).

Args: {"build": "build_cnn", "out": path, "dynamo": bool, "opset": int}. Runs in an environment with torch and
transformers (the CNN needs only torch).
"""

from __future__ import annotations

import sys
from pathlib import Path

import _stage

a = _stage.args()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import models  # noqa: E402
import torch  # noqa: E402

module, inputs = getattr(models, a["build"])()
names = list(models.BERT_INPUTS if "bert" in a["build"] else models.CNN_INPUTS)
output = "last_hidden_state" if "bert" in a["build"] else "output"
Path(a["out"]).parent.mkdir(parents=True, exist_ok=True)
kw = dict(input_names=names, output_names=[output], opset_version=a["opset"], dynamo=a["dynamo"])
call = (f"torch.onnx.export(models.{a['build']}()[0], inputs, {Path(a['out']).name!r}, input_names={names}, "
        f"output_names={[output]}, opset_version={a['opset']}, dynamo={a['dynamo']})")
with _stage.Recorder() as rec:
    torch.onnx.export(module, inputs, a["out"], **kw)
_stage.result(call=call, versions=_stage.versions("torch", "transformers", "onnx", "onnxscript"),
              warnings=rec.messages, files=[a["out"]])

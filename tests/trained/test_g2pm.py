"""g2pM's readings of Chinese polyphones (tests/trained/g2pm.py, tried as a new user): a PyTorch model its author
runs in numpy, ported back to torch and exported with its targets' positions as an input; its LSTM stays float in
INT8 (ONNX Runtime's quantizer quantizes the embedding's Gather, cp_debug's built-in the two Gemms only).

The right answers, without cp_debug: FP16 moves no reading; the built-in INT8 (its own quantizer,
`precision.int8.quantize_int8`) calibrated on the even windows changes one reading of window 15, and leaving the
classifier's last Gemm (876 classes) out of INT8 alone brings it back, the Gemm before it does not. cp_debug says the
FP16 candidate is within precision with its decision held, and names the last Gemm, confirmed by intervention, with
its mechanism: the logits' Q/DQ pair rounds them at a step (1.02: ±129 over 127 levels) wider than the changed row's
top-two margin (0.367), three classes read one level and the argmax takes the first (`quantized/output_step.py`) — for
torch's dynamo export too, whose refinement went on from the confirmed Gemm into the Sequential's first layer before
(`look_inside.within_confirmed`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export, three quantizations and a bisect with its intervention (~20 s each)
HERE = Path(__file__).resolve().parent
JUDGED = 15
# the classifier's last Gemm and the one before it, as each exporter names them
NODES = {False: ("/logit_layer/logit_layer.2/Gemm", "/logit_layer/logit_layer.0/Gemm"),
         True: ("node_linear_1", "node_linear")}


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_the_classifiers_last_gemm_is_named_and_fp16_holds(tmp_path, dynamo):
    import onnx
    import onnxruntime as ort
    import torch

    from cp_debug.precision.int8 import quantize_int8
    from tests.trained.corpus import needs
    from tests.trained.g2pm import CALIB, model, windows

    needs("g2pM", "pip install --no-deps g2pM==0.1.2.5: its files only")
    w = windows()
    fp32 = tmp_path / "g2pm.onnx"
    torch.onnx.export(model(), (torch.from_numpy(w[JUDGED]["ids"]), torch.from_numpy(w[JUDGED]["targets"])),
                      str(fp32), input_names=["ids", "targets"], output_names=["logits"],
                      opset_version=18 if dynamo else 17, dynamo=dynamo)
    graph, calib = onnx.load(fp32), [w[i] for i in CALIB]
    last, hidden = NODES[dynamo]

    def readings(m) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, w[JUDGED])[0].argmax(-1)

    ref = readings(graph)
    built = quantize_int8(graph, calib).model
    assert (readings(built) != ref).sum() == 1
    # the mechanism: the logits' own pair rounds them at a step wider than the changed row's top-two margin
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in built.graph.initializer}
    step = float(inits[next(n.input[1] for n in built.graph.node if n.op_type == "DequantizeLinear"
                            and n.output[0] == "logits")])
    logits = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, w[JUDGED])[0]
    top = np.sort(logits, axis=1)
    assert (top[:, -1] - top[:, -2]).min() < step
    assert (readings(quantize_int8(graph, calib, exclude_nodes=[last]).model) == ref).all()
    assert (readings(quantize_int8(graph, calib, exclude_nodes=[hidden]).model) != ref).any()

    np.savez(tmp_path / "x.npz", **w[JUDGED])
    (tmp_path / "calib").mkdir()
    for i in CALIB:
        np.savez(tmp_path / "calib" / f"w{i}.npz", **w[i])
    proc = cpdebug("bisect", "--onnx", fp32, "--inputs", tmp_path / "x.npz", "--calib", tmp_path / "calib", "-b",
                   "ort-cpu,ort-cpu-fp16,ort-cpu-int8", "--metric", f"{HERE / 'g2pm.py'}:pinyin_metric", "--json",
                   tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["outcomes"]["ort-cpu-fp16"] == "within_precision", report["outcomes"]
    assert all(d["held"] for d in report["decisions"]["ort-cpu-fp16"]), report["decisions"]
    assert report["outcomes"]["ort-cpu-int8"] == "diverged", report["outcomes"]
    cause = report["root_cause"]["ort-cpu-int8"]
    assert cause["confirmed"] and cause["intervention"]["keep"] == [last], cause["hint"]
    assert f"the output 'logits' is quantized at a step of {step:.3g}" in cause["hint"], cause["hint"]
    # the root named is the layer whose restoration brought the reading back, not the Gemm before it (dynamo's
    # export: the refinement of the confirmed `logit_layer.2/Gemm` went on into `logit_layer.0/Gemm`)
    assert cause["probe"] in ("logits", "logit_layer.2/Gemm"), cause["probe"]

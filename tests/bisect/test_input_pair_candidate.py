"""A graph input's Q/DQ pair as a candidate of the intervention (issue 115, item 1; bisect/cures/shared_scale.py).

torchfcpe's INT8 (a user's `quantize_static` file): its mel input, transposed, is read through one per-tensor pair;
on the judged clip no layer left out of INT8 alone, no set of the ranked and neither half of the graph brought the
voicing of the silence's frames back, while removing that one pair did (found by hand) — and cp_debug said "no single
layer: the error accumulates". The input's pair is now tried after the graph outputs' (`MOST`).

Here, built small: a [time, features] input transposed, read by two 1-d convs whose sum is decided at 0.5. One
feature spans ±100 (the convs ignore it), the three others ±0.5: at the input's one step (~0.8) they round to 0 or
one step, and 7 of 16 scores flip. Each conv left out of INT8 alone leaves the other reading the rounded input (by
hand, ONNX Runtime's `nodes_to_exclude`: the scores still flip); the file with the input's pair removed flips none,
and so does the file quantized with both convs left out (the cure said in the quantizer's terms, by name)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.bisect.test_tensor_candidates import _without_scale
from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # two quantizations by hand, a bisect with its intervention (~10 s idle)

METRIC = Path(__file__).parents[1] / "fix" / "threshold_metric.py"


def _model() -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = [np.concatenate([np.zeros((2, 1, 1)), rng.normal(0, 1.5, (2, 3, 1))], 1).astype(np.float32)
         for _ in range(2)]
    nodes = [helper.make_node("Transpose", ["x"], ["feats"], name="to_channels", perm=[0, 2, 1]),
             helper.make_node("Conv", ["feats", "wa"], ["a"], name="conv_a"),
             helper.make_node("Conv", ["feats", "wb"], ["b"], name="conv_b"),
             helper.make_node("Add", ["a", "b"], ["logit"], name="sum"),
             helper.make_node("Sigmoid", ["logit"], ["y"], name="score")]
    g = helper.make_graph(nodes, "two_readers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8])],
                          [numpy_helper.from_array(w[0], "wa"), numpy_helper.from_array(w[1], "wb")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _x(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 0.5, (1, 8, 4)).astype(np.float32)
    x[..., 0] = rng.uniform(-100, 100, 8)
    return x


def _quantized(tmp_path: Path, folder: str, exclude: tuple[str, ...] = ()) -> Path:
    from tests.trained.corpus import int8

    out = tmp_path / folder
    out.mkdir()
    onnx.save(int8(_model(), [{"x": _x(s)} for s in (1, 2, 3)], exclude), out / "model.onnx")
    return out


def _flips(model, x: np.ndarray, ref: np.ndarray) -> int:
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return int(((ref > 0.5) != (got > 0.5)).sum())


def test_the_input_s_pair_is_the_root_cause_where_no_layer_alone_restores(tmp_path):
    import onnxruntime as ort

    onnx.save(_model(), tmp_path / "m.onnx")
    x = _x(8)
    np.savez(tmp_path / "x.npz", x=x)
    ref = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    folder = _quantized(tmp_path, "q")
    scale = next(n.input[1] for n in onnx.load(folder / "model.onnx").graph.node
                 if n.op_type == "QuantizeLinear" and n.input[0] == "feats")
    # the right answer, without cp_debug
    assert _flips(folder / "model.onnx", x, ref) >= 3
    assert _flips(_without_scale(folder / "model.onnx", scale), x, ref) == 0
    for conv in ("conv_a", "conv_b"):
        assert _flips(_quantized(tmp_path, conv, (conv,)) / "model.onnx", x, ref) > 0
    assert _flips(_quantized(tmp_path, "both", ("conv_a", "conv_b")) / "model.onnx", x, ref) == 0  # its readers

    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{folder}", "--metric", f"{METRIC}:kept", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"][f"ort@{folder}"]
    assert cause["probe"] == "feats" and cause["confirmed"], cause
    assert cause["hint"].startswith("the file reads its graph input 'x' through a per-tensor Q/DQ pair"), cause["hint"]
    # the cure in the quantizer's terms names the ops that read it (before: "nodes_to_exclude=[...]"), tried
    assert "nodes_to_exclude=['conv_a', 'conv_b']" in cause["hint"] and ": verified —" in cause["hint"], cause["hint"]
    cure = next(t for t in cause["intervention"]["tried"] if t["back"])
    assert cure["tensors"] == [scale] and cure["output_error_after"]["decisions_flipped"] == 0, cure

"""Issue 115, item 1 of the mechanisms helper: a scorer whose decision crosses its threshold on planted samples.

`write(folder)` writes `scores.onnx` — 4 scores = Sigmoid(x · W - 1) of 8 features — and 6 samples. Every feature and
weight is exact in float16 (multiples of 1/16 and 1/4: every product and partial sum too), so FP16 computes the
reference's numbers except where a sample carries a residue below float16's step at 1: samples `s1` and `s4` put
3e-4 on feature 7, whose weight into score 0 is 1, on top of an exact 1.0. FP32 scores 0 at sigmoid(3e-4) = 0.500075,
above 0.5; float16 stores 1.0003 as 1.0 (its step there is 9.8e-4), and the score is sigmoid(0) = 0.5, not above: the
decision flips by a difference far inside FP16's expected rounding. `kept` is the application's metric
(`--metric FILE.py:kept`): how many scores pass 0.5."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FLIPPED = ("s1", "s4")
RESIDUE = 3e-4


def write(folder: Path) -> Path:
    """scores.onnx and samples/ s0..s5 in `folder`; the model's path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(-4, 5, (8, 4)).astype(np.float32) / 4
    w[:, 0] = 0
    w[0, 0] = w[7, 0] = 1.0  # score 0 = sigmoid(x0 + x7 - 1)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"], name="proj"),
         helper.make_node("Sub", ["z", "one"], ["logit"], name="shift"),
         helper.make_node("Sigmoid", ["logit"], ["scores"], name="score")],
        "scores", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(4, np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = Path(folder) / "scores.onnx"
    onnx.save(model, path)
    samples = Path(folder) / "samples"
    samples.mkdir()
    for k in range(6):
        x = rng.integers(-16, 17, (1, 8)).astype(np.float32) / 16
        x[0, 0], x[0, 7] = (1.0, RESIDUE) if f"s{k}" in FLIPPED else (x[0, 0], 0.25)
        np.savez(samples / f"s{k}.npz", x=x)
    return path


def kept(outputs, reference, label=None) -> float:
    """The scores the application keeps: above 0.5."""
    return float((np.asarray(outputs["scores"]) > 0.5).sum())


def kept_of_asked(outputs, reference, label=None, inputs=None) -> float:
    """The scores the application keeps (above 0.5) of those the request asks for: score k where the input's feature
    k is positive — a decision only the input tells where it is (`--metric` naming `inputs` gets the sample's)."""
    asked = np.asarray(inputs["x"])[0, :4] > 0
    return float((np.asarray(outputs["scores"])[0][asked] > 0.5).sum())

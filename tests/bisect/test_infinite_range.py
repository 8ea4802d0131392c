"""A Q/DQ pair calibrated over values that reach -inf (an attention's mask written as Where(mask, 0, -inf), as
torch's exporter writes scaled_dot_product_attention's boolean mask): ONNX Runtime's `quantize_static` stores its scale
as inf, so every value the pair dequantizes is NaN (x / inf rounds to the zero point; 0 × inf is NaN). The reason is
the reference's -inf, not an FP16 cast (rxnfp's BERT, tests/trained/test_rxnfp.py: the file held no FP16); the cure
offered leaves every such pair out at once by its readers (each layer's Add and Softmax; the fill's Where not needed).
The same fault in every layer is said as one (issue 115): the root the first such pair in execution order, the
pairs carried in the JSON's `root_cause.same_fault`, the intervention's confirmation made with the set.

The fill as torch.onnx's dynamo exporter writes it, float32's lowest (-3.4e38), not -inf: the scale is finite (the
fill's range / 255, 1.33e36), every real score rounds to the zero point, each attention uniform over its tokens.
Compared through the fill the masked scores read "ok" and the root went to the output ("the error accumulates");
the pairs a mask's fill set are the same fault, said as one, the root the first and the set the cure."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug


LOWEST = float(np.finfo(np.float32).min)  # the dynamo exporter's fill


def _masked_attention(path, fill: float = -np.inf) -> None:
    """Two masked attentions one after the other (`a/`, `b/`), each adding the `fill` to its scores."""
    rng = np.random.default_rng(0)
    nodes, inits = [helper.make_node("Where", ["mask", "zero", "ninf"], ["fill"], name="Where")], []
    for layer, x, y in (("a", "q", "h"), ("b", "h", "out")):
        nodes += [helper.make_node("MatMul", [x, f"{layer}_kt"], [f"{layer}_scores"], name=f"{layer}/MatMul"),
                  helper.make_node("Add", [f"{layer}_scores", "fill"], [f"{layer}_masked"], name=f"{layer}/Add"),
                  helper.make_node("Softmax", [f"{layer}_masked"], [f"{layer}_w"], axis=-1, name=f"{layer}/Softmax"),
                  helper.make_node("MatMul", [f"{layer}_w", f"{layer}_v"], [y], name=f"{layer}/MatMul_1")]
        inits += [numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), f"{layer}_kt"),
                  numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), f"{layer}_v")]
    inits += [numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
              numpy_helper.from_array(np.full(1, fill, np.float32), "ninf")]
    graph = helper.make_graph(nodes, "masked_attention",
                              [helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 4, 8]),
                               helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, 1, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _feeds(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"q": rng.normal(size=(1, 4, 8)).astype(np.float32),
             "mask": (np.arange(16) < 16 - 2 * (i % 4 + 1)).reshape(1, 1, 16)} for i in range(n)]


def _bisected(tmp_path, fill: float) -> tuple:
    """The two masked attentions with `fill`, quantized by `quantize_static` (Q/DQ, its defaults, 8 samples) and
    bisected: the run, its words on one line and the report's root cause."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(_feeds(8, 1))

        def get_next(self):
            return next(self.it, None)

    _masked_attention(tmp_path / "model.onnx", fill)
    (tmp_path / "q").mkdir()
    with pytest.warns(RuntimeWarning) if np.isinf(fill) else contextlib.nullcontext():  # an infinite scale's zero
        quantize_static(str(tmp_path / "model.onnx"), str(tmp_path / "q" / "model.onnx"), Reader(),  # point
                        quant_format=QuantFormat.QDQ)
    np.savez(tmp_path / "x.npz", **_feeds(1, 2)[0])
    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz",
                   "-b", f"ort-cpu,ort@{tmp_path / 'q'}", "--json", tmp_path / "r.json")
    root = json.loads((tmp_path / "r.json").read_text())["root_cause"][f"ort@{tmp_path / 'q'}"]
    return proc, " ".join((proc.stdout + proc.stderr).split()), root


def test_a_scale_made_inf_by_a_range_that_reaches_minus_inf_is_said_as_such(tmp_path):
    proc, said, root = _bisected(tmp_path, -np.inf)
    assert proc.returncode == 1, said[-3000:]
    assert "is inf in the file (the reference's values reach -inf (" in said, said[-3000:]
    assert "a range calibrated over them is infinite): every value it dequantizes is NaN" in said, said[-3000:]
    assert "FP16 cast" not in said
    # every pair whose scale is inf left out at once by its readers (each layer's alone is not enough; the fill's
    # Where left out too is not needed: its pair's readers are the Adds)
    assert "`nodes_to_exclude=['a/Add', 'b/Add', 'a/Softmax', 'b/Softmax']`" in said, said[-3000:]
    assert "verified — the file with the Q/DQ feeding a/Add, b/Add, a/Softmax, b/Softmax removed" in said
    # one mechanism repeated: the root the first pair in execution order, the set the fact the JSON carries
    assert "the same fault in 3 Q/DQ pairs (fill, a_masked, b_masked): each pair's scale is inf" in said, said[-3000:]
    assert "root cause: fill (the first of 3 with the same fault)" in said, said[-3000:]
    assert root["probe"] == "fill" and root["same_fault"] == ["fill", "a_masked", "b_masked"], root["probe"]
    assert root["confirmed"] and root["intervention"]["keep"] == ["a/Add", "b/Add", "a/Softmax", "b/Softmax"]


def test_a_range_set_by_a_masks_finite_fill_is_the_same_fault(tmp_path):
    """The dynamo exporter's fill: the file's masked scores' pair has a finite scale past 1e35, the fill's."""
    proc, said, root = _bisected(tmp_path, LOWEST)
    model = onnx.load(str(tmp_path / "q" / "model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "a_masked")
    assert np.isfinite(inits[q.input[1]]) and float(inits[q.input[1]]) > 1e35  # the file as its producer writes it
    assert proc.returncode == 1, said[-3000:]
    assert "the same fault in 3 Q/DQ pairs (fill, a_masked, b_masked): each pair's range was set by a mask's fill" \
        in said, said[-3000:]
    assert "a range set by a mask's fill" in said, said[-3000:]  # the root pair's own reason
    assert root["probe"] == "fill" and root["same_fault"] == ["fill", "a_masked", "b_masked"], root  # before: `out`
    assert "`nodes_to_exclude=['a/Add', 'b/Add', 'a/Softmax', 'b/Softmax']`" in said, said[-3000:]
    assert root["confirmed"] and root["intervention"]["keep"] == ["a/Add", "b/Add", "a/Softmax", "b/Softmax"]

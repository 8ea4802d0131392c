"""A Q/DQ pair calibrated over values that reach -inf (an attention's mask written as Where(mask, 0, -inf), as
torch's exporter writes scaled_dot_product_attention's boolean mask): ONNX Runtime's `quantize_static` stores its scale
as inf, so every value the pair dequantizes is NaN (x / inf rounds to the zero point; 0 × inf is NaN). The reason is
the reference's -inf, not an FP16 cast (rxnfp's BERT, tests/trained/test_rxnfp.py: the file held no FP16); the cure
offered leaves every such pair out at once by its readers (each layer's Add and Softmax; the fill's Where not needed).
The same fault in every layer is said as one (issue 115): the root the first such pair in execution order, the
pairs carried in the JSON's `root_cause.same_fault`, the intervention's confirmation made with the set."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug


def _masked_attention(path) -> None:
    """Two masked attentions one after the other (`a/`, `b/`), each adding the -inf fill to its scores."""
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
              numpy_helper.from_array(np.full(1, -np.inf, np.float32), "ninf")]
    graph = helper.make_graph(nodes, "masked_attention",
                              [helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 4, 8]),
                               helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, 1, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _feeds(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"q": rng.normal(size=(1, 4, 8)).astype(np.float32),
             "mask": (np.arange(16) < 16 - 2 * (i % 4 + 1)).reshape(1, 1, 16)} for i in range(n)]


def test_a_scale_made_inf_by_a_range_that_reaches_minus_inf_is_said_as_such(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(_feeds(8, 1))

        def get_next(self):
            return next(self.it, None)

    _masked_attention(tmp_path / "model.onnx")
    (tmp_path / "q").mkdir()
    with pytest.warns(RuntimeWarning):  # the quantizer's own zero point of an infinite scale
        quantize_static(str(tmp_path / "model.onnx"), str(tmp_path / "q" / "model.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ)
    np.savez(tmp_path / "x.npz", **_feeds(1, 2)[0])
    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz",
                   "-b", f"ort-cpu,ort@{tmp_path / 'q'}", "--json", tmp_path / "r.json")
    said = " ".join((proc.stdout + proc.stderr).split())
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
    root = json.loads((tmp_path / "r.json").read_text())["root_cause"][f"ort@{tmp_path / 'q'}"]
    assert root["probe"] == "fill" and root["same_fault"] == ["fill", "a_masked", "b_masked"], root["probe"]
    assert root["confirmed"] and root["intervention"]["keep"] == ["a/Add", "b/Add", "a/Softmax", "b/Softmax"]

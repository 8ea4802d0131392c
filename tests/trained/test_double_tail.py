"""A graph whose tail computes in float64 (issue 115, item 4: no refusal of what runs). swift-f0's pitch decoder
(its wheel's `model.onnx`) casts its logits to double before a Softmax over the bins and an expectation over their
log-frequencies; the runners give every float as float32, so the lockstep's cut at the Softmax declared a float
input beside the double output its inference gave it: "ONNX Runtime cannot load the model", exit 2, on a file plain
ONNX Runtime runs. Built here small with swift-f0's tail (a Cast to double, Softmax, Mul by float64 bins, ReduceSum,
Exp).
Its 358 nodes are unnamed too: the advice read "Log '' left out of INT8 (--exclude-int8 )"; each unnamed node is now
called by its first output, as --keep-fp32 and --exclude-int8 take it (`graph.model.named_nodes`)."""

from __future__ import annotations

import json

import numpy as np

from tests.cli_run import cpdebug
from tests.trained.made import double_tail_model


def test_a_float64_tail_is_cut_and_judged(tmp_path):
    import onnx
    import onnxruntime as ort

    model = double_tail_model()
    onnx.save(model, tmp_path / "m.onnx")
    x = np.random.default_rng(1).standard_normal((1, 20, 16)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    plain = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert plain.dtype == np.float64 and np.isfinite(plain).all()  # plain ONNX Runtime runs the file
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   "ort-cpu,ort-cpu-fp16", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]  # was exit 2: the cut at the Softmax
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["outcomes"]["ort-cpu-fp16"] == "within_precision"
    # every layer of the float64 tail was probed and compared, not skipped
    assert {"p", "pb", "log_f", "pitch"} <= {p["name"] for p in rep["probes"]}


def test_unnamed_nodes_are_called_by_their_first_output(tmp_path):
    import onnx

    model = double_tail_model()
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(1).standard_normal((1, 20, 16)).astype(np.float32))
    # the node writing `logits` kept in FP32 by that name: a name the file never gave it
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "-b",
                   "ort-cpu,ort-cpu-fp16", "--keep-fp32", "logits", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rep = json.loads((tmp_path / "r.json").read_text())
    said = [w for w in rep["warnings"] if "have no name" in str(w)]
    assert said and "8 of m.onnx's 8 nodes" in str(said[0]) and "'a'" in str(said[0]), rep["warnings"]
    assert any("1 node(s) kept in FP32 by the conversion (user list" in n
               for n in rep["precision"]["ort-cpu-fp16"]["notes"]), rep["precision"]["ort-cpu-fp16"]

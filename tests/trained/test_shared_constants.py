"""A file whose convs share one weight and one bias (tf2onnx's basic-pitch: its CQT front end's 16 convs read one
bias and one kernel) is no refusal (issue 115, item 4): the built-in INT8 candidate quantizes it to a file ONNX
Runtime loads (ORT's quantizer names its copies of a shared bias `bias` + a number, checked against the initializers
only: `b2` was also a conv's output, "Duplicate definition of name"), and a Q/DQ file that ONNX Runtime's exact
integer products (session.x64quantprecision) cannot load (a shared weight's initializer added twice) runs with its
default INT8 kernels, said in the precision line, judged — not "cannot load the model" (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.cli_run import cpdebug


def _shared(n: int = 4):
    """`n` 3×3 convs in a chain, all reading the weight `w` and the bias `b`; the first one writes `b2`."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    names = ["x", "b2", *(f"t{k}" for k in range(1, n - 1)), "y"]
    nodes = [helper.make_node("Conv", [names[k], "w", "b"], [names[k + 1]], name=f"c{k}", pads=[1, 1, 1, 1])
             for k in range(n)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [numpy_helper.from_array(0.3 * rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w"),
                           numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return model, [{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(3)]


def test_a_bias_four_convs_share_quantizes_to_a_file_onnx_runtime_loads():
    import onnxruntime as ort

    from cp_debug.precision.int8 import own_shared_biases, quantize_int8

    model, feeds = _shared()
    mine = own_shared_biases(model)
    biases = [n.input[2] for n in mine.graph.node]
    assert biases[0] == "b" and len(set(biases)) == 4 and "b2" not in biases  # each its own, no tensor's name
    values = {i.name: onnx.numpy_helper.to_array(i) for i in mine.graph.initializer}
    assert all(np.array_equal(values[b], values["b"]) for b in biases)
    q = quantize_int8(model, feeds).model
    sess = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got, want = sess.run(None, feeds[0])[0], ref.run(None, feeds[0])[0]
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99  # INT8's numbers of this model


def test_a_qdq_file_exact_products_cannot_load_is_judged(tmp_path):
    import onnxruntime as ort

    from cp_debug.backends.ort.ort_session import INT8_SESSION_CONFIG
    from cp_debug.precision.int8 import quantize_int8

    model, feeds = _shared()
    q = quantize_int8(model, feeds).model
    so = ort.SessionOptions()
    for k, v in INT8_SESSION_CONFIG.items():
        so.add_session_config_entry(k, v)
    try:  # the premise: ONNX Runtime's exact integer products refuse this file (its default kernels load it)
        ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
        refused = False
    except Exception:  # noqa: BLE001 - ONNX Runtime's own Fail
        refused = True
    (tmp_path / "q").mkdir()
    onnx.save(model, tmp_path / "m.onnx")
    onnx.save(q, tmp_path / "q" / "model.onnx")
    np.savez(tmp_path / "x.npz", **feeds[0])
    np.savez(tmp_path / "c.npz", x=np.concatenate([f["x"] for f in feeds]))
    label = f"ort@{tmp_path / 'q'}"
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                   tmp_path / "c.npz", "-b", f"ort-cpu,ort-cpu-int8,{label}", "--json", tmp_path / "r.json",
                   "--quiet")
    assert proc.returncode in (0, 1, 4), proc.stdout[-2000:] + proc.stderr[-2000:]
    rep = json.loads((tmp_path / "r.json").read_text())
    for c in ("ort-cpu-int8", label):  # judged, neither refused nor "not run as asked"
        assert rep["outcomes"][c] in ("within_precision", "degraded", "diverged"), rep["outcomes"]
    notes = " ".join(rep["precision"]["ort-cpu-int8"].get("notes", []))
    assert ("cannot load this Q/DQ file with exact integer products" in notes) == refused, notes
    assert rep["precision"]["ort-cpu-int8"]["effective"] == "int8"


def test_a_node_left_out_of_int8_reads_float_where_a_sibling_is_quantized():
    """MTCNN's PNet: its score conv and its box conv read one tensor; ORT's `nodes_to_exclude` left the score conv
    reading the pair the box conv asked for, so "left out of INT8" still moved its face proposals."""
    from onnx import TensorProto, helper, numpy_helper

    from cp_debug.precision.int8 import quantize_int8

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(0.3 * rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{k}")
             for k in range(3)]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["h"], name="trunk", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["h", "w1"], ["score"], name="score", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["h", "w2"], ["box"], name="box", pads=[1, 1, 1, 1])]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in ("x", "score", "box")]
    model = helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    feeds = [{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(3)]
    q = quantize_int8(model, feeds, exclude_nodes=["trunk", "score"]).model
    writer = {o: n.op_type for n in q.graph.node for o in n.output}
    score = next(n for n in q.graph.node if n.name == "score")
    box = next(n for n in q.graph.node if n.name == "box")
    assert list(score.input) == ["h", "w1"]  # float, as in the model
    assert writer[box.input[0]] == "DequantizeLinear"  # the box conv still in INT8
    import onnxruntime as ort

    got = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"]).run(["score"], feeds[0])
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["score"], feeds[0])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)  # the score: FP32's, no INT8 rounding

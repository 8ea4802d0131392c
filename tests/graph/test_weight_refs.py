"""graph/weight_store.referring (issue 116 item 5): a file's tensors read in from its data file (`onnx_read.adopt`:
those under `STORE_MIN_BYTES`) go to ONNX Runtime as references to where they lie, not as the graph's bytes — the
same outputs — and one whose bytes were changed since goes inline."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cp_debug.graph import onnx_files, weight_store
from cp_debug.graph.model import load_onnx
from cp_debug.graph.session import point_at_weights, session_source
from cp_debug.ort_sessions import open_session, session_options


def _file(tmp_path):
    """x · W + s (W 256 KB stored where it lies, s 128 KB read in, `tiny` 1 KB read in), external data beside."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((256, 256)).astype(np.float32), "W")
    s = numpy_helper.from_array(rng.standard_normal((128, 256)).astype(np.float32), "s")
    tiny = numpy_helper.from_array(np.linspace(-1, 1, 256, dtype=np.float32)[None], "tiny")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("Add", ["y", "s"], ["z"]),
             helper.make_node("Mul", ["z", "tiny"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [128, 256])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [128, 256])], [w, s, tiny])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    return path


def _outputs(model, feed):
    so = session_options()
    point_at_weights(so, model)
    with session_source(model) as src:
        sess = open_session(src, so)
    return sess.run(None, feed)[0], src


def test_tensors_read_in_go_to_the_session_as_references_and_changed_ones_inline(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_files, "STORE_LIMIT", 1 << 10)  # the file is adopted: W stored where it lies
    monkeypatch.setattr(weight_store, "STORE_MIN_BYTES", 200 << 10)  # s (128 KB) and tiny read in
    monkeypatch.setattr(weight_store, "_READ_IN", {})
    path = _file(tmp_path)
    model = load_onnx(path)
    inits = {t.name: t for t in model.graph.initializer}
    assert weight_store.is_stored(inits["W"]) and inits["s"].raw_data and inits["tiny"].raw_data
    feed = {"x": np.random.default_rng(1).standard_normal((128, 256)).astype(np.float32)}
    want = onnx.load(str(path))  # onnx's own reader: every value read in
    expected = open_session(want.SerializeToString(), session_options()).run(None, feed)[0]

    got, src = _outputs(model, feed)
    sent = onnx.load_from_string(src)
    refs = {t.name: t for t in sent.graph.initializer}
    assert refs["s"].data_location == TensorProto.EXTERNAL and not refs["s"].raw_data  # a reference
    assert refs["tiny"].raw_data == inits["tiny"].raw_data  # under REFER_MIN_BYTES: as it is
    assert inits["s"].raw_data  # the caller's model unchanged
    np.testing.assert_array_equal(got, expected)

    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    t = next(t for t in changed.graph.initializer if t.name == "s")
    t.raw_data = (numpy_helper.to_array(t) + 1).astype(np.float32).tobytes()  # the same name, other bytes
    got, src = _outputs(changed, feed)
    assert next(t for t in onnx.load_from_string(src).graph.initializer if t.name == "s").raw_data  # inline
    np.testing.assert_allclose(got, expected + np.linspace(-1, 1, 256, dtype=np.float32)[None], rtol=1e-5,
                               atol=1e-5)

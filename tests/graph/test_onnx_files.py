"""graph/onnx_files.py: a model written with its weights as onnx's external data is the same model to onnx,
ONNX Runtime and cp_debug's own reader; nothing is changed in the caller's proto; the copies made past protobuf's
one-message limit equal protobuf's own."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnx.printer
import pytest
from onnx import TensorProto, helper, numpy_helper

from cp_debug.graph import onnx_files
from cp_debug.graph.onnx_files import (copy_model, data_file_name, encoded, export_graph, holds_stored, model_nbytes,
                                       save_onnx, update_digest)
from cp_debug.graph.session import session_source


def _model() -> onnx.ModelProto:
    """MatMul by a 1.4 MB weight (aligned in the data file), a Constant node's tensor, a small bias kept inline."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((600, 600)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.arange(4, dtype=np.float32), "b_small")
    const = helper.make_node("Constant", [], ["c"], name="const",
                             value=numpy_helper.from_array(rng.standard_normal(600).astype(np.float32)))
    nodes = [const, helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
             helper.make_node("Add", ["y", "c"], ["z"], name="add"),
             helper.make_node("ReduceSum", ["z"], ["s"], name="sum", keepdims=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 600])],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, [])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _same(a: onnx.ModelProto, b: onnx.ModelProto) -> bool:
    """The same nodes, inputs and outputs and the same weights, element for element, wherever each side keeps them
    (upb's == compares encodings, whose field order differs between a message built by CopyFrom and one built
    field by field)."""
    from cp_debug.graph import weight_store

    def values(t):  # wherever it lies: inline, or a stored tensor's file
        return weight_store.values(t) if weight_store.is_stored(t) else numpy_helper.to_array(t)

    ga, gb = a.graph, b.graph
    same_graph = all(list(getattr(ga, f)) == list(getattr(gb, f)) for f in ("input", "output")) and [
        onnx.printer.to_text(n) for n in ga.node if n.op_type != "Constant"] == [
        onnx.printer.to_text(n) for n in gb.node if n.op_type != "Constant"]
    arrays = [(t.name, values(t)) for t in ga.initializer]
    others = [(t.name, values(t)) for t in gb.initializer]
    return same_graph and len(arrays) == len(others) and all(
        na == nb and np.array_equal(x, y) for (na, x), (nb, y) in zip(arrays, others))


def _run(source, x):
    import onnxruntime as ort

    return ort.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_external_data_is_the_same_model_and_the_callers_proto_is_untouched(tmp_path):
    model = _model()
    before = model.SerializeToString()
    files = save_onnx(model, tmp_path / "m.onnx", external=True)
    assert [f.name for f in files] == ["m.onnx.data", "m.onnx"] and data_file_name("m.onnx") == "m.onnx.data"
    assert model.SerializeToString() == before  # onnx's own save(save_as_external_data) would have emptied it
    graph_only = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    external = {t.name for t in graph_only.graph.initializer if t.data_location == TensorProto.EXTERNAL}
    assert external == {"W"}  # the 16-byte bias stays in the graph
    offsets = {e.key: int(e.value) for e in graph_only.graph.initializer[0].external_data if e.key != "location"}
    assert offsets["length"] == 600 * 600 * 4 and offsets["offset"] % (1 << 16) == 0  # onnx's alignment
    const = graph_only.graph.node[0].attribute[0].t
    assert const.data_location == TensorProto.EXTERNAL  # a Constant's 2.4 kB tensor goes outside too
    onnx.checker.check_model(str(tmp_path / "m.onnx"))  # by path, as for any file past 2 GiB
    back = onnx.load(str(tmp_path / "m.onnx"))
    for a, b in zip(model.graph.initializer, back.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    x = np.random.default_rng(1).standard_normal((2, 600)).astype(np.float32)
    assert _run(str(tmp_path / "m.onnx"), x) == _run(before, x)


def test_a_model_past_the_inline_limit_is_never_encoded_whole(tmp_path, monkeypatch):
    model = _model()
    assert model_nbytes(model) == 600 * 600 * 4 + 600 * 4 + 16
    x = np.ones((2, 600), np.float32)
    with session_source(model) as src:
        assert isinstance(src, bytes)
        small = _run(src, x)
    monkeypatch.setattr(onnx_files, "INLINE_LIMIT", 1 << 20)
    assert encoded(model) is None
    with session_source(model) as src:  # a path, with its data file beside it
        assert isinstance(src, str) and src.endswith("model.onnx")
        assert _run(src, x) == small
    files = save_onnx(model, tmp_path / "auto.onnx")  # external=None: by size
    assert [f.name for f in files] == ["auto.onnx.data", "auto.onnx"]


def test_a_digest_past_the_limit_tells_weights_apart_and_is_stable(monkeypatch):
    monkeypatch.setattr(onnx_files, "INLINE_LIMIT", 1 << 20)

    def digest(m):
        h = hashlib.sha256()
        update_digest(h, m)
        return h.hexdigest()

    a, b = _model(), _model()
    assert digest(a) == digest(b)
    raw = bytearray(b.graph.initializer[0].raw_data)
    raw[-1] ^= 1
    b.graph.initializer[0].raw_data = bytes(raw)
    assert digest(a) != digest(b)


def test_copies_and_exports_of_weights_copied_one_by_one_equal_protobufs_own(monkeypatch):
    """Past 1 GiB a tensor is copied field by field (protobuf encodes a message to copy it and fails at 2 GiB):
    here the threshold is lowered so that the 1.4 MB weight takes that path."""
    import onnx_graphsurgeon as gs

    model = _model()
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    exported_plain = gs.export_onnx(gs.import_onnx(model))
    monkeypatch.setattr(onnx_files, "_COPY_WHOLE_BYTES", 1 << 20)
    copied = copy_model(model)
    assert _same(copied, plain)
    graph = gs.import_onnx(model)
    exported = export_graph(graph)
    assert _same(exported, exported_plain)
    assert graph.tensors()["W"]._values.tensor.raw_data  # the graph keeps its own weights after the export


def test_cache_entries_past_the_limit_keep_their_weights_beside_them_and_go_with_them(tmp_path, monkeypatch):
    from cp_debug.files import prune_cache
    from cp_debug.graph.stored import load_entry, store_entry

    monkeypatch.setattr(onnx_files, "INLINE_LIMIT", 1 << 20)
    monkeypatch.setattr(onnx_files, "STORE_LIMIT", 1 << 20)
    model = _model()
    assert store_entry(tmp_path, "k1", model, {"schema": "s"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1.json", "k1.onnx", "k1.onnx.data"]
    found, meta = load_entry(tmp_path, "k1", "s")
    assert holds_stored(found)  # read where it lies: the entry's data file, registered, nothing read in
    assert meta == {"schema": "s"} and _same(found, model)
    assert prune_cache(tmp_path, max_bytes=0) == ["k1"] and not list(tmp_path.iterdir())
    monkeypatch.setenv("CPDEBUG_CACHE_MAX_MB", "1")  # larger than the whole cache may be: not stored
    assert not store_entry(tmp_path, "k2", model, {"schema": "s"}) and not list(tmp_path.iterdir())


def test_a_graph_too_big_for_one_message_even_without_its_weights_is_one_line(tmp_path, monkeypatch):
    from cp_debug.errors import BadInputError

    monkeypatch.setattr(onnx_files, "PROTO_LIMIT", 100)
    with pytest.raises(BadInputError, match="graph alone is over protobuf's 2 GiB"):
        save_onnx(_model(), tmp_path / "m.onnx", external=False)
    assert not list(tmp_path.iterdir())

"""load_onnx (one clear error for missing/corrupt/invalid files, external data ok) and expose_outputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from cp_debug.graph.model import expose_outputs, load_onnx
from cp_debug.errors import BadInputError


def test_external_data_loads_and_missing_data_is_one_line(tiny, tmp_path):
    model = load_onnx(tiny.path)
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="ext.data",
              size_threshold=0)
    loaded = load_onnx(path)
    assert len(loaded.graph.initializer) == len(model.graph.initializer)
    (tmp_path / "ext.data").unlink()
    with pytest.raises(BadInputError) as e:
        load_onnx(path)
    assert "ext.onnx" in str(e.value) and "\n" not in str(e.value)


def test_load_rejects_non_models(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError):
        load_onnx(empty)
    with pytest.raises(BadInputError, match="expected an ONNX file path"):
        load_onnx(42)


def test_expose_outputs(tiny):
    model = load_onnx(tiny.path)
    out = expose_outputs(model, ["/Relu_output_0", "out", "/Relu_output_0"])
    names = [o.name for o in out.graph.output]
    assert names == ["out", "mean", "/Relu_output_0"]
    assert out.graph.output[2].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == ["out", "mean"]  # input untouched
    weight = next(i.name for i in model.graph.initializer)
    with pytest.raises(BadInputError, match="constants"):
        expose_outputs(model, [weight])
    with pytest.raises(BadInputError, match="valid ones include '/"):
        expose_outputs(model, ["/nope"])
    assert expose_outputs(model, []) is model


def _names_model():
    """Edge cases of what a tensor name is: an input an initializer replaces (read and unread), an unread
    initializer, a sparse initializer, an omitted optional input, a name read but made nowhere."""
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    f = TensorProto.FLOAT
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Add", ["x", "w"], ["a"], name="add"),
             helper.make_node("Clip", ["a", "", "hi"], ["c"], name="clip"),
             helper.make_node("Mul", ["c", "sp"], ["m"], name="mul"),
             helper.make_node("Add", ["m", "dangling"], ["y"], name="add2")]
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([1.0], np.float32), "sp"),
                                       numpy_helper.from_array(np.array([0], np.int64)), [2])
    graph = helper.make_graph(
        nodes, "g", [vi("x", f, [2]), vi("w", f, [2]), vi("shadowed_unread", f, [2])], [vi("y", f, [2])],
        [numpy_helper.from_array(np.ones(2, np.float32), n) for n in ("w", "shadowed_unread", "unread")]
        + [numpy_helper.from_array(np.array(6.0, np.float32), "hi")], sparse_initializer=[sparse])
    return helper.make_model(graph)


def test_tensor_names_are_checked_as_onnx_graphsurgeon_sees_them():
    """check_tensor_names reads the proto (no graphsurgeon import): each name is accepted, unknown or a constant
    exactly where graphsurgeon's tensors() says it is a Variable, absent or a Constant."""
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import check_tensor_names

    model = _names_model()
    tensors = gs.import_onnx(model).tensors()
    for name in ("x", "w", "a", "c", "m", "y", "sp", "hi", "dangling", "shadowed_unread", "unread", "nope"):
        seen = ("ok" if name in tensors and not isinstance(tensors[name], gs.Constant) else
                "constants" if name in tensors else "unknown")
        try:
            check_tensor_names(model, [name])
            said = "ok"
        except BadInputError as err:
            said = "constants" if "are constants" in str(err) else "unknown"
            assert "\n" not in str(err)
        assert said == seen, name
    with pytest.raises(BadInputError, match=r"valid ones include 'a', 'c', 'm', 'y'$"):
        check_tensor_names(model, ["nope"])


def test_encoded_is_the_models_bytes_and_none_past_the_limit(tiny, monkeypatch):
    """encoded(): SerializeToString's bytes; None past the inline limit (nothing encoded), where load_onnx skips
    the in-memory check."""
    from cp_debug.graph import onnx_files

    model = load_onnx(tiny.path)
    data = onnx_files.encoded(model)
    assert data == model.SerializeToString()
    monkeypatch.setattr(onnx_files, "INLINE_LIMIT", onnx_files.model_nbytes(model))
    assert onnx_files.encoded(model) is None
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    broken.ir_version = 10_000  # invalid: not checked in memory past the limit
    assert load_onnx(broken) is broken
    monkeypatch.undo()
    with pytest.raises(BadInputError, match="not valid"):
        load_onnx(broken)


def test_inference_without_the_weights_values_is_inference_on_the_model(tiny):
    """infer_types is infer_shapes to the byte, weights put back; inferred_graph types as it does; neither changes
    the model; without_weights keeps every initializer's name, type and dims and the values of the small ones."""
    from cp_debug.graph.model import inferred_graph, infer_types, without_weights

    model = load_onnx(tiny.path)
    before = model.SerializeToString()
    full = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    assert len(full.graph.value_info) > 0
    assert infer_types(model).SerializeToString() == full.SerializeToString()
    g = inferred_graph(model)
    for field in ("value_info", "input", "output", "node"):
        assert [v.SerializeToString() for v in getattr(g, field)] == \
            [v.SerializeToString() for v in getattr(full.graph, field)], field
    light = without_weights(model)
    assert model.SerializeToString() == before
    sizes = [int(np.prod(t.dims)) for t in model.graph.initializer]
    assert max(sizes) > 1024 >= min(sizes)  # the tiny net has both kinds
    for t, kept, n in zip(model.graph.initializer, light.graph.initializer, sizes):
        assert (kept.name, kept.data_type, list(kept.dims)) == (t.name, t.data_type, list(t.dims))
        assert kept.raw_data == (t.raw_data if n <= 1024 else b"")
    assert len(light.SerializeToString()) < len(before) / 2
    light.graph.ClearField("initializer")
    model.graph.ClearField("initializer")
    assert light.SerializeToString() == model.SerializeToString()  # all else as it was


def test_shape_values_inference_reads_are_kept():
    """Reshape's and Expand's shapes are values inference reads: kept, the tensors after them have their shapes as
    with the weights (without the value the Reshape's output has none)."""
    from onnx import TensorProto, helper, numpy_helper

    from cp_debug.graph.model import inferred_graph, without_weights

    inits = [numpy_helper.from_array(np.ones(4096, np.float32), "w"),
             numpy_helper.from_array(np.array([2, 2048], np.int64), "shape"),
             numpy_helper.from_array(np.array([3, 2, 2048], np.int64), "to")]
    nodes = [helper.make_node("Add", ["x", "w"], ["y"]), helper.make_node("Reshape", ["y", "shape"], ["z"]),
             helper.make_node("Expand", ["z", "to"], ["e"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4096])],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred_graph(model).value_info) + list(inferred_graph(model).output)}
    assert shapes == {"y": [1, 4096], "z": [2, 2048], "e": [3, 2, 2048]}
    assert without_weights(model).graph.initializer[0].raw_data == b""
    stripped = without_weights(model)
    stripped.graph.initializer[1].ClearField("raw_data")  # what keeping the small values guards against
    blind = onnx.shape_inference.infer_shapes(stripped, strict_mode=False).graph
    assert not any(v.name == "z" and v.type.tensor_type.HasField("shape") for v in blind.value_info)


def test_a_conversion_leaves_the_graph_it_read_byte_for_byte(tmp_path):
    """graphsurgeon's export writes the tensor a node attribute was read from (ConstantOfShape's value), naming it,
    into the graph it makes:
    the model read then held `name: ""` it did not hold (2 bytes; a served bisect's next command no longer took the
    session of the graph as deployed, its key being the graph's bytes). `weight_store.import_graph` reads such a
    value from a copy."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from cp_debug.precision.fp16 import convert_to_fp16

    fill = helper.make_node("ConstantOfShape", ["s"], ["ones"],
                            value=helper.make_tensor("", TensorProto.INT64, [1], [1]))
    fill.attribute[0].t.ClearField("name")  # as exporters write an attribute's tensor: no name at all
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"]), fill, helper.make_node("Cast", ["ones"], ["c"], to=TensorProto.FLOAT),
         helper.make_node("Add", ["x", "c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before = model.SerializeToString()
    converted = convert_to_fp16(model)
    assert model.SerializeToString() == before
    assert len(converted.graph.node) > len(model.graph.node)  # converted all the same (its Casts)
    onnx.checker.check_model(converted)
    assert np.array_equal(onnx.numpy_helper.to_array(model.graph.node[1].attribute[0].t), [1])

"""load_onnx (one clear error for missing/corrupt/invalid files, external data ok) and expose_outputs."""

from __future__ import annotations

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

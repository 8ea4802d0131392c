"""export/dynamic.py: the `--dynamic` spelling read and printed back the same, a file's `dynamic()` as torch.export
takes it, the axes inferred from samples' shapes, and the export with them — each axis dynamic in the ONNX graph (ONNX
Runtime runs any length), one the model ties to a static size one line, the export cache keyed by them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cp_debug.errors import BadInputError
from cp_debug.export.cache import export_cached
from cp_debug.export.dynamic import (FROM_FILE, FROM_OPTION, FROM_SAMPLES, Axis, DynamicAxes, from_user, inferred,
                                     parse_dynamic, said_of)
from cp_debug.export.torch_export import export_module

SHAPES = {"input_ids": (1, 16), "attention_mask": (1, 16)}
NAMES = tuple(SHAPES)


def test_the_option_is_read_back_as_it_is_printed():
    axes = parse_dynamic(["input_ids:0,1=seq", "input1:1=seq"]).named(NAMES, SHAPES, "m")
    assert axes.spelled() == ("input_ids:0,1=seq", "attention_mask:1=seq")  # input1: the second input's name
    assert axes.of("input_ids")[0] == Axis("input_ids", 0, "input_ids_0")  # unnamed: its default name
    again = parse_dynamic(list(axes.spelled())).named(NAMES, SHAPES, "m")
    assert again == axes and again.key() == axes.key()
    assert axes.free(SHAPES) == {"input_ids": (None, None), "attention_mask": (1, None)}
    assert axes.onnx_axes() == {"input_ids": {0: "input_ids_0", 1: "seq"}, "attention_mask": {1: "seq"}}
    assert parse_dynamic(None) is None and parse_dynamic([]) is None
    assert parse_dynamic(["x:-1"]).named(("x",), {"x": (1, 8, 4)}, "m").spelled() == ("x:2",)


def test_a_files_dynamic_is_read_as_torch_export_takes_it():
    from torch.export import Dim

    seq = Dim("seq", min=2, max=4096)
    axes = from_user({"input_ids": {1: seq}, "attention_mask": {1: seq}}, NAMES, "dynamic()")
    assert axes.source == FROM_FILE
    assert axes.axes == (Axis("input_ids", 1, "seq", 2, 4096), Axis("attention_mask", 1, "seq", 2, 4096))
    by_position = from_user(({0: "batch", 1: None}, None), NAMES, "dynamic()")
    assert by_position.axes == (Axis("input_ids", 0, "batch"), Axis("input_ids", 1))
    per_axis = from_user({"input_ids": [None, "seq"], "attention_mask": (1, Dim.AUTO)}, NAMES, "dynamic()")
    assert per_axis.axes == (Axis("input_ids", 1, "seq"), Axis("attention_mask", 1))
    shapes = axes.torch_shapes(NAMES)
    assert shapes[0][1] is shapes[1][1] and shapes[0][1].max == 4096  # one Dim a name
    for bad, said in ((3, "must return a dict"), ({"input_ids": 1}, "must be a dict {axis: name}"),
                      ({"input_ids": {"1": "s"}}, "not an integer"), ((None, None, None), "gives 3 entries")):
        with pytest.raises(BadInputError, match=said):
            from_user(bad, NAMES, "dynamic()")


def test_axes_are_inferred_where_a_sample_differs_from_the_example():
    samples = [{"input_ids": (1, 64), "attention_mask": (1, 64)}, {"input0": (1, 512), "label": (1,)}]
    axes = inferred(SHAPES, samples, NAMES)
    assert axes.source == FROM_SAMPLES and axes.spelled() == ("input_ids:1", "attention_mask:1")
    assert said_of(axes.to_json()) and "--dynamic input_ids:1 --dynamic attention_mask:1" in said_of(axes.to_json())[0]
    assert said_of(DynamicAxes(axes.axes, FROM_OPTION).to_json()) == []
    assert inferred(SHAPES, [dict(SHAPES), {"input_ids": (1, 16, 3)}], NAMES) is None  # a rank: the check says it
    image = inferred({"x": (1, 3, 64, 64)}, [{"x": (2, 3, 96, 96)}], ("x",))
    assert image.spelled() == ("x:0,2,3",)  # a square image's height and width stay two axes


class _Masked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, mask):
        return (self.lin(x) * mask[..., None]).sum(1)


def _example():
    return torch.randn(1, 8, 4), torch.ones(1, 8)


def test_the_export_is_dynamic_where_asked_and_runs_any_length_in_onnx_runtime():
    import onnxruntime as ort

    torch.manual_seed(0)
    model, (x, mask) = _Masked().eval(), _example()
    axes = parse_dynamic(["x:1=seq", "mask:1=seq"]).named(("x", "mask"), {"x": (1, 8, 4), "mask": (1, 8)}, "m")
    for exporter in ("dynamo", "torchscript"):
        got = export_module(model, (x, mask), ["x", "mask"], ["out"], exporter=exporter, dynamic=axes)
        assert [d.dim_param for d in got.model.graph.input[0].type.tensor_type.shape.dim] == ["", "seq", ""]
        sess = ort.InferenceSession(got.model.SerializeToString(), providers=["CPUExecutionProvider"])
        long_x = np.random.default_rng(0).standard_normal((1, 300, 4)).astype(np.float32)
        out = sess.run(None, {"x": long_x, "mask": np.ones((1, 300), np.float32)})[0]
        want = model(torch.from_numpy(long_x), torch.ones(1, 300)).detach().numpy()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_an_axis_the_model_ties_to_a_static_one_is_one_line():
    model = _Masked().eval()
    only_x = parse_dynamic(["x:1"]).named(("x", "mask"), {"x": (1, 8, 4), "mask": (1, 8)}, "m")
    with pytest.raises(BadInputError, match=r"fixed the dynamic axes x:1 \(8\) at the example's size"):
        export_module(model, _example(), ["x", "mask"], ["out"], exporter="dynamo", dynamic=only_x)


def test_the_cache_keys_the_axes_and_a_static_export_keeps_its_key():
    from cp_debug.export.cache import export_key
    from cp_debug.files import cache_dir

    torch.manual_seed(1)
    model, example = _Masked().eval(), _example()
    spec = parse_dynamic(["x:1=seq", "mask:1=seq"]).named(("x", "mask"), {"x": (1, 8, 4), "mask": (1, 8)}, "m")
    static = export_cached(model, example, ["x", "mask"], ["out"], exporter="dynamo")
    dynamic = export_cached(model, example, ["x", "mask"], ["out"], exporter="dynamo", dynamic=spec)
    assert (static.cache, dynamic.cache) == ("stored", "stored")  # two entries: the axes are in the key
    settings = {"input_names": ["x", "mask"], "output_names": ["out"], "dynamic_axes": None, "exporter": "dynamo",
                "opset": 17, "extra": repr(None)}  # a static export's settings, as before issue 110
    assert (cache_dir("exports") / f"{export_key(model, example, settings)}.onnx").is_file()
    assert static.model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 8
    assert dynamic.model.graph.input[0].type.tensor_type.shape.dim[1].dim_param == "seq"
    again = export_cached(model, example, ["x", "mask"], ["out"], exporter="dynamo", dynamic=DynamicAxes(
        spec.axes, FROM_SAMPLES))  # the same axes said another way: the same graph
    assert again.cache == "hit"

"""Cuts of a real exported net: by tensor names (segment_inputs + extract_segment) and by node range (cut_range).

Every cut is run in ONNX Runtime on the whole graph's own values and must give the whole graph's values back.
"""

from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
import pytest

from cp_debug.errors import BadInputError
from cp_debug.graph.model import computed_tensor_names, load_onnx
from cp_debug.graph.segment import cut_range, extract_segment, segment_inputs
from cp_debug.graph.session import run_all_outputs, run_ort


@pytest.fixture(scope="module")
def whole(tiny):
    model = load_onnx(tiny.path)
    graph = gs.import_onnx(model)
    graph.cleanup().toposort()
    values = {"x": tiny.x, **run_all_outputs(graph, {"x": tiny.x})}
    return model, graph, values


def test_run_all_outputs_gives_every_computed_tensor(whole, tiny):
    model, graph, values = whole
    assert set(computed_tensor_names(gs.export_onnx(graph).graph)) <= set(values)
    got = run_ort(model, {"x": tiny.x})
    for name in tiny.output_names:
        np.testing.assert_array_equal(values[name], got[name])


def test_a_node_range_runs_alone_on_the_whole_graphs_values(whole):
    _, graph, values = whole
    n = len(graph.nodes)
    start, stop = n // 3, 2 * n // 3
    sub, ins, outs = cut_range(graph, start, stop, values)
    assert ins and outs and len(sub.graph.node) == stop - start
    got = run_ort(sub, {k: values[k] for k in ins})
    for k in outs:
        np.testing.assert_allclose(got[k], values[k], rtol=1e-5, atol=1e-6)


def test_segment_from_known_tensors_stops_there_and_reproduces_the_target(whole):
    model, graph, values = whole
    names = computed_tensor_names(gs.export_onnx(graph).graph)
    known, target = names[2], names[len(names) // 2]
    bnames = segment_inputs(model, [target], {known})
    assert bnames == [known]  # a chain: everything before `known` is cut away
    feed = {b: values[b] for b in bnames}
    seg = extract_segment(model, feed, [target], {target: values[target].shape})
    got = run_ort(seg, feed)[target]
    np.testing.assert_allclose(got, values[target], rtol=1e-5, atol=1e-6)


def test_cutting_at_an_unknown_tensor_is_one_line(whole):
    model, _, values = whole
    with pytest.raises(BadInputError, match="no tensor named 'nope'") as e:
        extract_segment(model, {"x": values["x"]}, ["nope"])
    assert "\n" not in str(e.value)



def test_cuts_of_an_ir3_file_are_valid_models():
    """IR 3 (ONNX's own zoo files: light_resnet50.onnx) lists every initializer as a graph input too; a cut of it is
    written at IR 4, where initializers need not be inputs, and passes onnx's checker (at IR 3 the op-level why of
    ResNet-50's planted overflow stopped at "initializer but not in graph input")."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cp_debug.graph.plan import plan_segments, segment_model, tensor_types

    def value(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    inits = [numpy_helper.from_array(np.full((4, 4), 0.5, np.float32), "w"),
             numpy_helper.from_array(np.ones(4, np.float32), "b")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "ir3", [value("x", [2, 4]), value("w", [4, 4]), value("b", [4])],
                              [value("y", [2, 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    onnx.checker.check_model(model)

    cut = extract_segment(model, {"h": np.zeros((2, 4), np.float32)}, ["y"])
    assert cut.ir_version == 4
    onnx.checker.check_model(cut)
    got = run_ort(cut, {"h": np.array([[-2.0, -1.0, 0.0, 1.0]] * 2, np.float32)})
    assert np.array_equal(got["y"], np.array([[0.0, 0.0, 1.0, 2.0]] * 2, np.float32))

    seg = plan_segments(model, ["h", "a"]).segments[-1]
    part = segment_model(model, seg, {t: np.zeros((2, 4), np.float32) for t in seg.inputs}, tensor_types(model),
                         {t.name: t for t in model.graph.initializer})
    assert part.ir_version == 4
    onnx.checker.check_model(part)

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

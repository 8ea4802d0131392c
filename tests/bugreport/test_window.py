from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cp_debug.compare.diff import Tolerance
from cp_debug.errors import BadInputError
from cp_debug.bugreport.window import shrink_segment
from tests.report import models

TOL = Tolerance(atol=2e-2, rtol=2e-2)
# Only n4 misbehaves in FP16: its output (~4e5) is beyond 65504; n5 brings FP32 back into range.
CHAIN = [("Relu", None), ("Mul", 0.5), ("Add", 1.0), ("Mul", 1000.0), ("Mul", 300.0), ("Mul", 1e-3)]


def _x():
    return np.random.default_rng(0).uniform(0, 1, models.SHAPE).astype(np.float32)


def test_shrinks_a_six_node_chain_to_the_misbehaving_node():
    m = models.chain(CHAIN)
    assert np.isinf(models.run(models.fp16_storage(m), {"x": _x()})["y"]).all()  # the whole chain diverges
    r = shrink_segment(m, models.fp16_storage, {"x": _x()}, TOL)
    assert len(r.nodes) <= 2 and "n4" in r.nodes
    assert (r.start, r.stop, r.total_nodes) == (4, 5, 6)
    assert list(r.inputs) == ["t3"] and list(r.reference_outputs) == ["t4"]
    np.testing.assert_allclose(r.inputs["t3"], (np.maximum(_x(), 0) * 0.5 + 1) * 1000, rtol=1e-6)
    assert np.isinf(r.candidate_outputs["t4"]).all()
    onnx.checker.check_model(r.candidate)
    onnx.checker.check_model(r.model)
    assert [n.op_type for n in r.model.graph.node] == ["Mul"]
    assert r.evaluations <= 12 and not r.notes


def test_a_segment_that_does_not_diverge_is_refused():
    m = models.chain([("Relu", None), ("Mul", 0.5), ("Add", 1.0)])
    with pytest.raises(BadInputError, match="does not diverge on its own"):
        shrink_segment(m, models.fp16_storage, {"x": _x()}, TOL)


def test_a_skip_connection_stays_an_output_of_the_cut():
    """a = x*1000; b = a*300 (overflows); c = b*1e-3; y = c + a: a is live across the cut."""
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Mul", ["x", "k1"], ["a"], name="m1"),
             helper.make_node("Mul", ["a", "k2"], ["b"], name="m2"),
             helper.make_node("Mul", ["b", "k3"], ["c"], name="m3"),
             helper.make_node("Add", ["c", "a"], ["y"], name="add")]
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in
             (("k1", 1000.0), ("k2", 300.0), ("k3", 1e-3))]
    g = helper.make_graph(nodes, "skip", [helper.make_tensor_value_info("x", f, models.SHAPE)],
                          [helper.make_tensor_value_info("y", f, models.SHAPE)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    x = np.random.default_rng(1).uniform(0.5, 1, models.SHAPE).astype(np.float32)
    r = shrink_segment(m, models.fp16_storage, {"x": x}, lambda ref, cand: any(
        not np.isfinite(v).all() for v in cand.values()))
    assert r.nodes == ["m2"]
    assert list(r.inputs) == ["a"] and list(r.reference_outputs) == ["b"]


def test_a_range_the_transform_cannot_take_is_noted_not_fatal():
    m = models.chain(CHAIN)
    calls = []

    def picky(model):
        calls.append(len(model.graph.node))
        if len(model.graph.node) == 3:
            raise ValueError("cannot convert three nodes")
        return models.fp16_storage(model)

    r = shrink_segment(m, picky, {"x": _x()}, TOL)
    assert "n4" in r.nodes
    assert 3 in calls and any("cannot convert three nodes" in n for n in r.notes)


def test_a_transform_that_renames_outputs_is_refused():
    def renames(model):
        m = models.fp16_storage(model)
        for node in m.graph.node:
            node.output[:] = [o + "_16" if o == "y" else o for o in node.output]
        m.graph.output[0].name = "y_16"
        return m

    with pytest.raises(BadInputError, match="must keep names"):
        shrink_segment(models.chain(CHAIN), renames, {"x": _x()}, TOL)


def test_a_custom_runner_is_used_for_the_candidate():
    seen = []

    def run(model, feed):
        seen.append(len(model.graph.node))
        return models.run(model, {k: v.astype(np.float32) for k, v in feed.items()})

    r = shrink_segment(models.chain(CHAIN), models.fp16_storage, {"x": _x()}, TOL, run=run)
    assert r.nodes == ["n4"] and len(seen) == r.evaluations

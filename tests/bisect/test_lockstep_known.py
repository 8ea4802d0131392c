"""The lockstep's local runs that would repeat what it holds already (`lockstep.Lockstep._rounding_exact`): a float16
lane's segment that only moves or compares elements gives, on the reference's boundary, the reference's outputs
rounded; a segment whose lane inputs are the reference's as the lane stores them was fed the local run's values."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from cp_debug.backends.ort.ort_runner import OrtRunner
from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.stages.lockstep import Lane, Lockstep
from cp_debug.determinism import Determinism
from cp_debug.graph.plan import plan_segments, segment_model, tensor_types

FP16 = "ort-cpu-fp16"
PROBES = ["r", "a", "b", "p", "d", "e"]


def _model() -> onnx.ModelProto:
    """x -> reshape r -> conv a -> relu b -> maxpool p -> concat(p, p) d -> conv e = y."""
    rng = np.random.default_rng(3)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [4, 4, 3, 3], rng.normal(size=144).astype(np.float32) * 0.3)
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [4, 8, 1, 1], rng.normal(size=32).astype(np.float32) * 0.3)
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 4, 8, 8])
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape_r"),
        helper.make_node("Conv", ["r", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv_a"),
        helper.make_node("Relu", ["a"], ["b"], name="relu_b"),
        helper.make_node("MaxPool", ["b"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool_p"),
        helper.make_node("Concat", ["p", "p"], ["d"], axis=1, name="concat_d"),
        helper.make_node("Conv", ["d", "w2"], ["e"], name="conv_e"),
        helper.make_node("Identity", ["e"], ["y"], name="out_y"),
    ]
    g = helper.make_graph(nodes, "moves", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], [w1, w2, shape])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _run(model, x, monkeypatch):
    """The lockstep over every probe, real runs counted by what they were fed: the lane's own inputs, or others."""
    runs = []
    real = OrtRunner.infer

    def counted(self, feed, *a, **k):
        runs.append((self.spec.precision, {t: np.asarray(v).copy() for t, v in feed.items()}))
        return real(self, feed, *a, **k)

    monkeypatch.setattr(OrtRunner, "infer", counted)
    lane = Lane(FP16, BackendSpec.parse(FP16), {"x": x})
    seen = {}
    ls = Lockstep(model, plan_segments(model, PROBES), BackendSpec.parse("ort"), [lane], determinism=Determinism(),
                  noise=False, local=True)
    ls.run({"x": x}, lambda pv: seen.setdefault(pv.tensor, pv) is None)
    monkeypatch.undo()
    return seen, runs, ls


def _segment_run(model, ls, tensor, feed):
    """`tensor`'s segment run alone in the float16 lane's way, on `feed`."""
    seg = ls.plan.segment_of(tensor)
    part = segment_model(model, seg, feed, tensor_types(model))
    with OrtRunner(part, BackendSpec.parse(FP16), fp16_io=True, check_model=False) as r:
        return r.infer({t: v.astype(np.float16) if v.dtype == np.float32 else v for t, v in feed.items()})[tensor]


def test_a_segment_that_moves_elements_is_not_run_again_on_the_reference_boundary(monkeypatch):
    model = _model()
    x = np.random.default_rng(4).normal(size=(1, 256)).astype(np.float32)
    seen, runs, ls = _run(model, x, monkeypatch)
    assert list(seen) == PROBES
    local = {t: seen[t].local[FP16] for t in PROBES}
    prop = {t: seen[t].propagated[FP16] for t in PROBES}
    # r reads the graph's input and a reads r, the reference's values rounded as the lane stores them: the lane's own
    # runs were the local runs
    assert local["r"] is prop["r"] and local["a"] is prop["a"]
    np.testing.assert_array_equal(prop["r"], seen["r"].reference.astype(np.float16))
    # b, p, d only move or compare elements: their local values are the reference's rounded, as a run gives them
    for t, up in (("b", "a"), ("p", "b"), ("d", "p")):
        assert local[t] is not prop[t] and local[t].dtype == np.float16
        np.testing.assert_array_equal(local[t], seen[t].reference.astype(np.float16))
        np.testing.assert_array_equal(local[t], _segment_run(model, ls, t, {up: seen[up].reference}))
    assert not np.array_equal(prop["b"], local["b"])  # the lane's own values differ: a real local error
    # e computes: run on the reference's boundary, a value of its own
    np.testing.assert_array_equal(local["e"], _segment_run(model, ls, "e", {"d": seen["d"].reference}))
    assert not np.array_equal(local["e"], prop["e"])
    # 7 segments: the reference's 7 runs, the lane's 7, one local run
    assert sum(p == "fp32" for p, _ in runs) == 7
    lane_runs = [feed for p, feed in runs if p == "fp16"]
    assert len(lane_runs) == 7 + 1  # e's local run: y's segment holds no probe, its local value is read by no one


def test_a_rounded_local_value_takes_the_lanes_dropped_array():
    """b's segment (a ReLU) has its local value rounded from the reference's; a's lane array, read by no later segment
    and held by no one (this caller keeps copies), takes it: the same values in the array that was dropped."""
    model = _model()
    x = np.random.default_rng(4).normal(size=(1, 256)).astype(np.float32)
    lane = Lane(FP16, BackendSpec.parse(FP16), {"x": x})
    seen, where = {}, {}

    def kept(pv):
        seen[pv.tensor] = (pv.reference.copy(), np.array(pv.local[FP16], copy=True))
        where[pv.tensor] = (pv.propagated[FP16].ctypes.data, pv.local[FP16].ctypes.data)
        return False

    Lockstep(model, plan_segments(model, PROBES), BackendSpec.parse("ort"), [lane], determinism=Determinism(),
             noise=False, local=True).run({"x": x}, kept)
    ref_b, local_b = seen["b"]
    assert local_b.dtype == np.float16
    np.testing.assert_array_equal(local_b, ref_b.astype(np.float16))
    assert where["b"][1] == where["a"][0]  # into a's lane array: no new one

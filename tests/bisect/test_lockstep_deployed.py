"""The lockstep's graph as deployed at no extra run (issue 118, item 2; `unprobed.chain_is_deployed`): a CPU FP16 lane
computes what its graph as deployed (the emulated FP16 pipeline, one session) computes, every tensor rounded after its
node inside a segment as at a cut, so its chain's outputs stand for that graph's; where the lane runs otherwise
(native float16, nodes kept in FP32, INT8) or the conversion may differ (a Cast), the graph as deployed is still run
and compared. Real ONNX Runtime runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cp_debug.backends.factory import make_runner
from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.bisect.stages.lockstep import Lane, Lockstep, lane_transform
from cp_debug.bisect.stages.unprobed import chain_is_deployed
from cp_debug.bisect.subjects.loaders import onnx_subject
from cp_debug.determinism import Determinism
from cp_debug.graph.plan import plan_segments
from tests.graph.models import residual_model

EVERY = ["a", "b", "c0", "c"]  # every tensor residual_model computes but its output


def _chain(model, probes, spec="ort-cpu-fp16", **kw):
    x = np.random.default_rng(3).normal(size=(1, 4, 8, 8)).astype(np.float32) * 40
    plan = plan_segments(model, probes)
    lane = Lane(spec, BackendSpec.parse(spec), {"x": x}, kw)
    ls = Lockstep(model, plan, BackendSpec.parse("ort"), [lane], determinism=Determinism(), noise=False, local=False)
    _, outs = ls.run({"x": x}, lambda pv: False)
    return x, plan, lane, ls, outs[spec]


@pytest.mark.parametrize("probes, rounded", [(EVERY, None), (["b"], 5)])
def test_a_lane_computes_its_graph_as_deployed_bit_for_bit(probes, rounded):
    """Cut after every node (ORT's own Casts around each node round its output), or with `a`, `c0` and `c` inside
    segments, each rounded after its node (before, a tensor read inside its segment stayed float32 between ORT's
    Casts: the chain was not the graph as deployed)."""
    model = residual_model()
    x, plan, lane, ls, out = _chain(model, probes)
    assert chain_is_deployed(model, plan, lane, ls.types)
    # segments that read a tensor of their own emulate float16 storage: the five tensors (a, b, c0, c, y) rounded
    assert (lane_transform(lane).half_storage or {}).get("rounded_tensors") == rounded
    with make_runner(BackendSpec.parse("ort-cpu-fp16"), onnx_model=model) as r:  # the graph as deployed
        deployed = r.infer({"x": x})
    assert r.transform.half_storage  # float16 storage after every node, as the deployed graph holds it
    np.testing.assert_array_equal(out["y"], deployed["y"])


def test_where_the_chain_may_differ_the_graph_as_deployed_is_run(monkeypatch):
    model = residual_model()
    _, plan, lane, ls, _ = _chain(model, EVERY, keep_fp32_nodes=["conv_c"])  # a node kept in FP32
    assert not chain_is_deployed(model, plan, lane, ls.types)
    _, plan, lane, ls, _ = _chain(model, EVERY, spec="ort-cpu-int8")
    assert not chain_is_deployed(model, plan, lane, ls.types)
    _, plan, lane, ls, _ = _chain(model, EVERY)
    monkeypatch.setenv("CPDEBUG_ORT_CPU_HALF", "native")  # the deployed graph: ORT's own float16, no rounding inside
    assert not chain_is_deployed(model, plan, lane, ls.types)
    monkeypatch.delenv("CPDEBUG_ORT_CPU_HALF")
    assert chain_is_deployed(model, plan, lane, ls.types)
    facts = list(lane.facts)  # a one-node segment whose session ran a float16 kernel (a CPU that has one)
    lane.facts[0] = replace(facts[0], compute_dtypes={"float16": 1})
    assert not chain_is_deployed(model, plan, lane, ls.types)
    lane.facts[:] = facts
    cast = helper.make_node("Cast", ["y"], ["z"], to=TensorProto.FLOAT, name="cast_z")  # conversion may keep float32
    with_cast = onnx.ModelProto()
    with_cast.CopyFrom(model)
    with_cast.graph.node.append(cast)
    assert not chain_is_deployed(with_cast, plan, lane, ls.types)


@pytest.mark.parametrize("mode", ["segments", "grouped"])
def test_the_engine_takes_the_chain_where_it_computes_the_graph_as_deployed(tmp_path, mode):
    """`--level all` on an ONNX stage cuts after every node: the chain's outputs stand for the graph as deployed
    (`same_kernels`, rel. RMS 0), by segments as in groups of them."""
    path = tmp_path / "residual.onnx"
    onnx.save(residual_model(), path)
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(4).normal(size=(1, 4, 8, 8)).astype(np.float32))
    engine = BisectEngine(onnx_subject(path, tmp_path / "x.npz"), ("ort", BackendSpec.parse("ort")),
                          [("ort-cpu-fp16", BackendSpec.parse("ort-cpu-fp16"))],
                          BisectOptions(level="all", lockstep_mode=mode))
    report = engine.run()
    engine.close()
    effect = report.candidates[0].probe_effect["residual"]
    assert effect["measured"] == "the stage cut into 5 segments" and not effect["outputs"][0]["beyond"], effect
    assert effect["same_kernels"] is True and effect["outputs"][0]["rel_rmse"] == 0, effect

"""The lockstep in whole-stage sessions (`--lockstep-mode grouped`, the default on CUDA): the values and
verdicts of the segment-by-segment lockstep, from a handful of sessions per stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.bisect.subjects.loaders import torch_subject
from cp_debug.bisect.stages.lockstep import Lane, Lockstep
from cp_debug.bisect.stages.lockstep_grouped import GroupedLockstep
from cp_debug.determinism import Determinism
from cp_debug.graph.grouped import (CUT_SUFFIX, group_segments, inner_cuts, merge_segments, open_cuts,
                                    static_types, tensor_bytes)
from cp_debug.graph.plan import plan_segments, segment_model, tensor_types
from tests.graph.models import residual_model

PLANTED = Path(__file__).with_name("planted.py")


def _run(cls, model, plan, x):
    lane = Lane("ort-cpu-fp16", BackendSpec.parse("ort-cpu-fp16"), {"x": x})
    seen = {}
    ls = cls(model, plan, BackendSpec.parse("ort"), [lane], determinism=Determinism(), noise=True, local=True)
    ref_out, outs = ls.run({"x": x}, lambda pv: seen.setdefault(pv.tensor, pv) is None)
    return seen, ref_out, outs, lane, ls


def test_grouped_values_are_the_segment_lockstep_values():
    model = residual_model()
    x = np.random.default_rng(1).normal(size=(1, 4, 8, 8)).astype(np.float32)
    plan = plan_segments(model, ["a", "b", "c"])
    seg, seg_ref, _, seg_lane, _ = _run(Lockstep, model, plan, x)
    grp, grp_ref, grp_outs, grp_lane, ls = _run(GroupedLockstep, model, plan, x)
    assert list(grp) == ["a", "b", "c"]
    for t in ("a", "b", "c"):
        np.testing.assert_allclose(grp[t].reference, seg[t].reference, rtol=1e-6, atol=1e-6)
        # local: each segment alone on the reference's (float16-rounded) boundary, from one opened-cut session;
        # ORT fuses and casts the whole graph a little differently from one segment: a float16 ulp or two
        np.testing.assert_allclose(grp[t].local["ort-cpu-fp16"], seg[t].local["ort-cpu-fp16"], rtol=4e-3, atol=4e-3)
        assert np.array_equal(grp[t].propagated["ort-cpu-fp16"],
                              grp[t].propagated["ort-cpu-fp16"].astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(grp_ref["y"], seg_ref["y"], rtol=1e-6, atol=1e-6)
    assert 0 < np.abs(grp_outs["ort-cpu-fp16"]["y"] - grp_ref["y"]).max() < 0.05
    assert len(grp_lane.facts) == 1 < len(seg_lane.facts)  # one session for the propagated run, not one a segment
    assert set(ls.reference_values({"x": x}, ["b", "x"])) == {"b", "x"}


def test_groups_and_opened_cuts():
    model = residual_model()
    plan = plan_segments(model, ["a", "b", "c"])
    types = static_types(model, {"x": (1, 4, 8, 8)})
    assert tensor_bytes(types, "a") == 4 * 4 * 8 * 8
    assert [[s.index for s in g] for g in group_segments(plan, types, 1 << 20)] == [[0, 1, 2, 3]]
    assert [[s.index for s in g] for g in group_segments(plan, types, 2100)] == [[0, 1], [2, 3]]
    members = plan.segments
    seg = merge_segments(model, members, 0)
    assert seg.inputs == ("x",) and seg.probes == ("a", "b", "c") and set(seg.outputs) == {"a", "b", "c", "y"}
    assert inner_cuts(model, members) == ("a", "b", "c")
    group = segment_model(model, seg, {"x": np.zeros((1, 4, 8, 8), np.float32)}, tensor_types(model))
    opened = open_cuts(group, model, members, {t: (1, 4, 8, 8) for t in "abc"})
    assert {i.name for i in opened.graph.input} == {"x"} | {t + CUT_SUFFIX for t in "abc"}
    reads = {n.name: list(n.input) for n in opened.graph.node}
    assert reads["relu_b"] == ["a" + CUT_SUFFIX] and reads["add_y"] == ["c" + CUT_SUFFIX, "a" + CUT_SUFFIX]
    assert reads["conv_a"][0] == "x"  # the first member reads the group's own input


def test_one_segment_a_group_is_the_segment_lockstep():
    model = residual_model()
    x = np.random.default_rng(2).normal(size=(1, 4, 8, 8)).astype(np.float32)
    plan = plan_segments(model, ["a", "b", "c"])
    seg, *_ = _run(Lockstep, model, plan, x)
    small, *_, ls = _run(lambda *a, **k: GroupedLockstep(*a, budget_bytes=1, **k), model, plan, x)
    assert len(ls.groups) == len(plan.segments)
    for t in "abc":
        for lab in ("ort-cpu-fp16",):
            np.testing.assert_array_equal(small[t].propagated[lab], seg[t].propagated[lab])
            np.testing.assert_array_equal(small[t].local[lab], seg[t].local[lab])


def _engine(subject, backends: str, **opts) -> BisectEngine:
    labels = backends.split(",")
    return BisectEngine(subject, (labels[0], BackendSpec.parse(labels[0])),
                        [(lab, BackendSpec.parse(lab)) for lab in labels[1:]], BisectOptions(**opts))


def test_grouped_engine_finds_the_planted_fp16_overflow_as_the_segment_lockstep(tmp_path):
    from cp_debug.bugreport.from_run import bundle_from_run

    subject = torch_subject(f"{PLANTED}:fp16_overflow")
    stage = subject.stages[0].name
    seg = _engine(subject, "ort,ort-cpu-fp16", lockstep_mode="segments").run()
    engine = _engine(subject, "ort,ort-cpu-fp16", lockstep_mode="grouped")
    grp = engine.run()
    assert grp.settings["execution"][stage].endswith("segments in 1 group sessions")
    assert not seg.settings["execution"][stage].endswith("group sessions")
    a, b = seg.candidates[0], grp.candidates[0]
    assert b.root_cause.probe == a.root_cause.probe == "body.2.1" and "FP16 range" in b.root_cause.hint
    assert b.first_divergent == a.first_divergent and b.path == a.path
    ra = {r.probe: r for r in a.results}
    for r in b.results:
        assert r.status == ra[r.probe].status, r.probe
    out = bundle_from_run(engine, grp, tmp_path / "bundle").path
    assert (out / "repro.py").is_file()
    engine.close()


def _chain(n: int, path: Path) -> Path:
    """An ONNX file of `n` small nodes in a chain (Mul by 1.5, Relu, in turn): a probe, and a segment, each."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, last = [], "x"
    for k in range(n):
        out = f"t{k}"
        nodes.append(helper.make_node("Mul", [last, "s"], [out], name=f"mul{k}") if k % 2 == 0
                     else helper.make_node("Relu", [last], [out], name=f"relu{k}"))
        last = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, [2, 8])],
                              initializer=[numpy_helper.from_array(np.array(1.01, np.float32), "s")])
    # an IR version every supported ONNX Runtime reads (a newer onnx writes one that ONNX Runtime 1.30 refuses)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path)
    return path


def test_auto_groups_a_plan_of_many_segments_only(tmp_path):
    """`--lockstep-mode auto` (the default) groups a stage of `GROUPED_FROM_SEGMENTS` segments or more (sessions
    were most of DenseNet-121's cost) and runs a shorter one segment by segment; the verdicts agree."""
    from cp_debug.bisect.subjects.loaders import onnx_subject
    from cp_debug.bisect.stages.lockstep_grouped import GROUPED_FROM_SEGMENTS

    for n, grouped in ((GROUPED_FROM_SEGMENTS + 10, True), (12, False)):
        subject = onnx_subject(_chain(n, tmp_path / f"chain{n}.onnx"))
        stage = subject.stages[0].name
        engine = _engine(subject, "ort,ort-cpu-fp16")
        report = engine.run()
        engine.close()
        execution = report.settings["execution"][stage]
        assert execution.endswith("group sessions") == grouped, execution
        assert report.candidates[0].first_divergent is None and len(report.candidates[0].results) >= n

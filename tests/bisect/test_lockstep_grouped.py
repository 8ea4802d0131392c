"""The lockstep in whole-stage sessions (`--lockstep-mode grouped`, the default on CUDA): the values and
verdicts of the segment-by-segment lockstep, from a handful of sessions per stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.bisect.loaders import torch_subject
from cp_debug.bisect.lockstep import Lane, Lockstep
from cp_debug.bisect.lockstep_grouped import GroupedLockstep
from cp_debug.determinism import Determinism
from cp_debug.graph.grouped import CUT_SUFFIX, crossing_tensors, cut_model
from cp_debug.graph.plan import plan_segments, tensor_types
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


def test_opened_cuts_read_graph_inputs():
    model = residual_model()
    plan = plan_segments(model, ["a", "b", "c"])
    crossing = crossing_tensors(plan)
    cut = cut_model(model, plan, tensor_types(model), ["a", "b", "c"], {t: (1, 4, 8, 8) for t in crossing})
    assert crossing == ("a", "b", "c")
    assert {i.name for i in cut.graph.input} == {"x"} | {t + CUT_SUFFIX for t in crossing}
    seg_of = {k: s.index for s in plan.segments for k in s.nodes}
    made_in = {t: seg_of[k] for k, n in enumerate(model.graph.node) if k in seg_of for t in n.output}
    for k, node in enumerate(cut.graph.node):  # no node reads a tensor another segment made
        for t in node.input:
            assert t not in made_in or made_in[t] == seg_of[k], (node.name, t)
    assert [n.input[1] for n in cut.graph.node if n.name == "add_y"] == ["a" + CUT_SUFFIX]
    assert [o.name for o in cut.graph.output] == ["a", "b", "c"]


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
    assert grp.settings["execution"][stage].endswith("in whole-stage sessions")
    assert not seg.settings["execution"][stage].endswith("in whole-stage sessions")
    a, b = seg.candidates[0], grp.candidates[0]
    assert b.root_cause.probe == a.root_cause.probe == "body.2.1" and "FP16 range" in b.root_cause.hint
    assert b.first_divergent == a.first_divergent and b.path == a.path
    ra = {r.probe: r for r in a.results}
    for r in b.results:
        assert r.status == ra[r.probe].status, r.probe
    out = bundle_from_run(engine, grp, tmp_path / "bundle")
    assert (out / "repro.py").is_file()
    engine.close()

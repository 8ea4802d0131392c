"""Segment-by-segment (lockstep) execution: the values it yields, and the engine on planted faults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cp_debug.backends.factory import make_runner
from cp_debug.graph.model import expose_outputs
from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.bisect.stages.lockstep import Lane, Lockstep
from cp_debug.graph.plan import plan_segments
from cp_debug.bisect.subjects.loaders import torch_subject
from cp_debug.determinism import Determinism
from tests.graph.models import residual_model

PLANTED = Path(__file__).with_name("planted.py")


def test_lockstep_yields_what_the_whole_graph_computes_and_keeps_only_live_tensors():
    model = residual_model()
    x = np.random.default_rng(1).normal(size=(1, 4, 8, 8)).astype(np.float32)
    with make_runner(BackendSpec.parse("ort"), onnx_model=expose_outputs(model, ["a", "b", "c"])) as r:
        whole = r.infer({"x": x})
    plan = plan_segments(model, ["a", "b", "c"])
    lane = Lane("ort-cpu-fp16", BackendSpec.parse("ort-cpu-fp16"), {"x": x})
    seen = {}
    ls = Lockstep(model, plan, BackendSpec.parse("ort"), [lane], determinism=Determinism(), noise=True, local=True)
    ref_out, outs = ls.run({"x": x}, lambda pv: seen.setdefault(pv.tensor, pv) is None)
    assert list(seen) == ["a", "b", "c"]
    for t in ("a", "b", "c"):
        np.testing.assert_allclose(seen[t].reference, whole[t], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref_out["y"], whole["y"], rtol=1e-5, atol=1e-5)
    # the first segment reads the shared input: its local run is the propagated one (same array)
    assert seen["a"].local["ort-cpu-fp16"] is seen["a"].propagated["ort-cpu-fp16"]
    # later segments get FP16-rounded inputs: the local run (on the reference's values) is a run of its own
    assert seen["c"].local["ort-cpu-fp16"] is not seen["c"].propagated["ort-cpu-fp16"]
    fp16_err = np.abs(outs["ort-cpu-fp16"]["y"] - ref_out["y"]).max()
    assert 0 < fp16_err < 0.05
    # a CPU FP16 lane's chain holds float16 (as the deployed graph stores it), its graph outputs come back float32
    assert {seen[t].propagated["ort-cpu-fp16"].dtype for t in "abc"} == {np.dtype(np.float16)}
    assert outs["ort-cpu-fp16"]["y"].dtype == np.float32
    # the propagated values are exactly the FP16 graph's on float16-rounded inputs, segment by segment
    with make_runner(BackendSpec.parse("ort-cpu-fp16"), onnx_model=expose_outputs(model, ["a"])) as r:
        a16 = r.infer({"x": x.astype(np.float16).astype(np.float32)})["a"]
    np.testing.assert_array_equal(seen["a"].propagated["ort-cpu-fp16"], a16.astype(np.float16))
    # ... and the whole chain is the plain emulated FP16 pipeline's (float16 storage after every node), bit for bit:
    # the floor `benchmarks/bisect_scale.py` measures the lockstep against
    with make_runner(BackendSpec.parse("ort-cpu-fp16"), onnx_model=expose_outputs(model, ["a", "b", "c"])) as r:
        plain16 = r.infer({"x": x})
    assert r.transform.half_storage  # the runner emulated float16 storage
    for t in ("a", "b", "c"):
        np.testing.assert_array_equal(seen[t].propagated["ort-cpu-fp16"], plain16[t].astype(np.float16))
    np.testing.assert_array_equal(outs["ort-cpu-fp16"]["y"], plain16["y"])
    assert set(lane.env) == {"y"}  # everything else was dropped once read for the last time
    assert len(lane.facts) == len(plan.segments)


def test_a_stage_in_lockstep_is_one_bar_with_eta_over_its_segments():
    """Progress of a stage run segment by segment: one bar with ETA over its segments (a CPU bisect of awml-base
    spent ~100 s there saying nothing where stderr was a file); where stderr is no terminal, its finished line."""
    import io

    from cp_debug.cli.common.output import StepProgress

    model = residual_model()
    x = np.random.default_rng(1).normal(size=(1, 4, 8, 8)).astype(np.float32)
    plan = plan_segments(model, ["a", "b", "c"])
    lane = Lane("ort-cpu-fp16", BackendSpec.parse("ort-cpu-fp16"), {"x": x})
    said = io.StringIO()
    ls = Lockstep(model, plan, BackendSpec.parse("ort"), [lane], determinism=Determinism(), noise=False,
                  local=False, progress=StepProgress(stream=said))
    ls.run({"x": x}, lambda pv: False, label="stage: ")
    n = len(plan.segments)
    lines = [ln for ln in said.getvalue().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("stage: segments") and f"{n}/{n}" in lines[0], said.getvalue()
    assert "eta" in lines[0]


def test_a_local_run_reads_the_reference_boundary_in_float16_into_the_lanes_dropped_array():
    from cp_debug.backends.ort.ort_runner import OrtRunner
    from cp_debug.graph.plan import segment_model, tensor_types

    model = residual_model()
    x = np.random.default_rng(2).normal(size=(1, 4, 8, 8)).astype(np.float32)
    plan = plan_segments(model, ["a", "b", "c"])
    lane = Lane("ort-cpu-fp16", BackendSpec.parse("ort-cpu-fp16"), {"x": x})
    seen = {}
    ls = Lockstep(model, plan, BackendSpec.parse("ort"), [lane], determinism=Determinism(), noise=False, local=True)
    ls.run({"x": x}, lambda pv: seen.setdefault(pv.tensor, pv) is None)
    # `b` is read last by c's segment: the lane's float16 `b` is dropped before the local run and the reference's
    # `b` converted into it. The local value is the float16 segment's on the float16-rounded reference boundary.
    seg = plan.segment_of("c")
    b16 = seen["b"].reference.astype(np.float16)
    part = segment_model(model, seg, {"b": seen["b"].reference}, tensor_types(model))
    with OrtRunner(part, BackendSpec.parse("ort-cpu-fp16"), fp16_io=True, check_model=False) as r:
        expect = r.infer({"b": b16})["c"]
    np.testing.assert_array_equal(seen["c"].local["ort-cpu-fp16"], expect)


def test_half_feed_converts_into_a_spare_array_only_when_nothing_else_holds_it():
    from cp_debug.bisect.stages.lane_values import half_feed

    ref = {"t": np.linspace(-2, 2, 64, dtype=np.float32).reshape(4, 16)}
    spare = {"t": np.zeros((4, 16), np.float16)}
    buf = spare["t"]
    del buf  # only the spare dict holds it
    held = spare["t"].ctypes.data
    feed = half_feed(ref, spare)
    assert feed["t"].dtype == np.float16 and feed["t"].ctypes.data == held and not spare
    np.testing.assert_array_equal(feed["t"], ref["t"].astype(np.float16))
    kept = np.zeros((4, 16), np.float16)  # still held by this test: never written over
    assert half_feed(ref, {"t": kept})["t"] is ref["t"] and not kept.any()
    assert half_feed(ref, {"t": np.zeros((2, 32), np.float16)})["t"] is ref["t"]  # another shape


def _engine(subject, backends: str, **opts) -> BisectEngine:
    labels = backends.split(",")
    return BisectEngine(subject, (labels[0], BackendSpec.parse(labels[0])),
                        [(lab, BackendSpec.parse(lab)) for lab in labels[1:]], BisectOptions(**opts))


def test_int8_hostile_layer_is_found_in_lockstep_as_in_the_whole_graph_run():
    subject = torch_subject(f"{PLANTED}:int8_hostile")
    lock = _engine(subject, "ort,ort-cpu-int8").run()
    whole = _engine(subject, "ort,ort-cpu-int8", lockstep=False).run()
    a, b = lock.candidates[0], whole.candidates[0]
    stage = subject.stages[0].name
    assert lock.settings["execution"][stage].startswith("lockstep")
    assert whole.settings["execution"][stage].startswith("whole stage")
    assert a.root_cause.probe.startswith("body.2") and a.root_cause.probe == b.root_cause.probe
    assert a.first_divergent == b.first_divergent
    ra = {r.probe: r for r in a.results}
    rb = {r.probe: r for r in b.results}
    assert ra.keys() == rb.keys()
    for name in ra:  # the same numbers, up to where INT8 rounding differs between the two graphs
        assert ra[name].diff.rel_rmse == pytest.approx(rb[name].diff.rel_rmse, rel=0.05), name
        # own errors: a lockstep segment is quantized alone (no pair where ORT's quantizer leaves a lone ReLU
        # float); the whole run's segments are cut from its one Q/DQ graph, as a user's file of it is
        # (`qdq_segments.py`: a ReLU's segment holds the pair on the conv output it reads): the planted layer's (and
        # its block's) the same, every other one rounding-sized through either
        own = (ra[name].local_judgement.noise_ratio, rb[name].local_judgement.noise_ratio)
        if max(own) > 1:
            assert ra[name].local.rel_rmse == pytest.approx(rb[name].local.rel_rmse, rel=0.05), name
        else:
            assert max(own) < 0.5, (name, own)
    assert {n for n in ra if ra[n].local_judgement.noise_ratio > 1} == {"body.2.1", "body.2"}
    assert ra[a.root_cause.probe].amplification > 10  # error in ÷ error out: the layer that adds it
    assert a.precision["requested"] == "int8"


def test_fp16_overflow_in_lockstep_and_its_bundle_reproduces(tmp_path):
    from cp_debug.bugreport.from_run import bundle_from_run

    engine = _engine(torch_subject(f"{PLANTED}:fp16_overflow"), "ort,ort-cpu-fp16")
    report = engine.run()
    cand = report.candidates[0]
    assert report.settings["execution"][engine.subject.stages[0].name].startswith("lockstep")
    # the exporter folds BatchNorm into the conv: body.2.0's conv and body.2.1's BN are one ONNX tensor, which
    # the probe map names after the BN (the most specific module with a tensor of its own)
    assert cand.root_cause.probe == "body.2.1" and "FP16 range" in cand.root_cause.hint
    assert cand.path == ["body.2", "body.2.1"] and cand.first_divergent == "body.2.1"
    assert report.settings["noise"] == {}  # ORT CPU is deterministic: no noise where it was measured
    # its segments hold several nodes each, every tensor rounded after its node as in the graph as deployed: the
    # chain's outputs stand for that graph's, not run again (`unprobed.chain_is_deployed`)
    effect = cand.probe_effect[engine.subject.stages[0].name]
    assert effect["same_kernels"] is True and effect["outputs"] and not any(r["beyond"] for r in effect["outputs"])
    out = bundle_from_run(engine, report, tmp_path / "bundle").path
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "repro.py"], cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "REPRODUCED" in proc.stdout, proc.stdout + proc.stderr
    engine.close()

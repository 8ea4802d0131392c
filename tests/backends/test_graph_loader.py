"""The graph preparation shared by the ONNX Runtime and TensorRT runners (`graph_loader.PrepareGraph`), the shared
feed check, and errors: a missing probe is reported the same way by both runners; a backend failing is not bad
input.

TensorRT cannot run here: its runner is driven with a fake runtime standing in for the engine (`fake_tensorrt.py`:
ONNX Runtime under TensorRT's runtime protocol), so everything of it but the engine build and TensorRT's kernels
runs: the shared preparation, the feed check, the bindings, the output map, the reports.
"""

from __future__ import annotations


import numpy as np
import pytest

from cp_debug.backends.graph_loader import PreparedGraph, PrepareGraph, vanished_note
from cp_debug.backends.ort.ort_runner import OrtRunner
from cp_debug.backends.spec import BackendSpec
from cp_debug.backends.trt.trt_plan import OUTPUTS_NOTE, plan_build
from cp_debug.backends.trt.trt_runner import TrtRunner
from cp_debug.errors import BackendRuntimeError, BackendUnavailableError, BadInputError

RELU = "/Relu_output_0"  # ReLU after the first (BN-folded) conv
CONV2 = "/c2/Conv_output_0"


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """TensorRT 10.8 "installed" (probes marked as outputs): the engine is the prepared graph, run by the fake
    runtime of `fake_tensorrt.py` (ONNX Runtime under TensorRT's runtime protocol). Not TensorRT: this checks our
    side of the runner (graph, feed checks, bindings, error mapping) only."""
    from tests.backends.fake_tensorrt import install

    return install(monkeypatch, "trt", "10.8.0")


@pytest.fixture
def relu_lost(monkeypatch):
    """INT8 quantization that loses RELU from its tensor map (as the quantizer does for a ReLU it removes)."""
    from cp_debug.precision import int8

    real = int8.quantize_int8

    def quantize(*args, **kwargs):
        q = real(*args, **kwargs)
        q.tensor_map.pop(RELU, None)
        return q

    monkeypatch.setattr(int8, "quantize_int8", quantize)
    from cp_debug.files import NO_CACHE_ENV

    monkeypatch.setenv(NO_CACHE_ENV, "1")  # not an entry the real quantizer cached for this graph and these feeds


def test_building_a_loader_does_nothing_and_calling_it_prepares(tiny):
    loader = PrepareGraph(tiny.path / "not-there.onnx", "ort-cpu-fp32")  # nothing is read yet
    with pytest.raises(BadInputError):
        loader()
    with pytest.raises(ValueError, match="unknown graph transform"):
        PrepareGraph(tiny.path, "x", "fp8")
    graph = PrepareGraph(tiny.path, "ort-cpu-fp16", "fp16", extra_outputs=(RELU, CONV2, "out"))()
    assert isinstance(graph, PreparedGraph)
    assert graph.graph_outputs == tuple(tiny.output_names)
    assert dict(graph.out_map) == {"out": "out", "mean": "mean", RELU: RELU, CONV2: CONV2}
    assert graph.missing == () and graph.plain is None and graph.quantized is None
    assert graph.transform.kind == "fp16" and graph.transform.nodes
    assert {o.name for o in graph.model.graph.output} == {"out", "mean", RELU, CONV2}
    with pytest.raises(BadInputError):  # a probe name the graph does not have is an error, not a missing probe
        PrepareGraph(tiny.path, "ort-cpu-fp32", extra_outputs=("no_such_tensor",))()


def test_int8_without_calibration_is_one_line(tiny):
    with pytest.raises(BadInputError, match="ort-cpu-int8 needs calibration inputs"):
        PrepareGraph(tiny.path, "ort-cpu-int8", "int8_qdq", extra_outputs=(RELU,))()


def test_ort_and_trt_prepare_the_same_graph_and_report_a_lost_probe_the_same_way(tiny, relu_lost, fake_tensorrt):
    """An INT8 graph that lost a probe: both runners leave it out of their outputs and report it missing, in
    `missing_outputs`, in their settings and in their precision report's notes."""
    spec_ort, spec_trt = BackendSpec.parse("ort-cpu-int8"), BackendSpec.parse("trt-int8")
    kw = dict(extra_outputs=[RELU, CONV2], calib_feeds=tiny.calib)
    ort_graph = OrtRunner(tiny.path, spec_ort, **kw).graph_loader()()
    trt_graph = TrtRunner(tiny.path, spec_trt, **kw).graph_loader(plan_build(spec_trt, (11, 0), probes=True))()
    assert ort_graph.missing == trt_graph.missing == (RELU,)
    assert dict(ort_graph.out_map) == dict(trt_graph.out_map) and RELU not in ort_graph.out_map
    assert ort_graph.transform == trt_graph.transform and ort_graph.transform.kind == "int8_qdq"

    note = vanished_note([RELU])
    outs = {}
    for runner in (OrtRunner(tiny.path, spec_ort, **kw), TrtRunner(tiny.path, spec_trt, cache=False, **kw)):
        with runner as r:
            outs[r.name] = r.infer({"x": tiny.x})
            assert r.missing_outputs == [RELU]
            assert r.settings()["missing_outputs"] == [RELU]
            assert note in r.precision_report().notes
            assert r.quant_amax()  # calibrated here
        assert runner.missing_outputs == [RELU]  # what was learnt stays readable after deactivate
    ort_out, trt_out = outs.values()
    assert list(ort_out) == list(trt_out) == ["out", "mean", CONV2]
    for name in ort_out:
        np.testing.assert_array_equal(ort_out[name], trt_out[name])


def test_trt_fp16_plan_and_the_marked_outputs_fallback_reach_settings_and_report(tiny, fake_tensorrt):
    """TensorRT 10.8: an FP32 file as trt-fp16 takes the builder flag; probes are marked as outputs, and the
    settings and the precision report say so."""
    with TrtRunner(tiny.path, BackendSpec.parse("trt-fp16"), extra_outputs=[CONV2], cache=False) as r:
        out = r.infer({"x": tiny.x})
        settings = r.settings()
        report = r.precision_report()
    assert set(out) == {"out", "mean", CONV2} and all(v.dtype == np.float32 for v in out.values())
    plan = settings["build_plan"]
    assert plan["onnx_transform"] == "none" and plan["flags"] == ["fp16"] and not plan["strongly_typed"]
    assert plan["probes"] == "outputs" and OUTPUTS_NOTE in plan["notes"] and OUTPUTS_NOTE in report.notes
    assert settings["missing_outputs"] == [] and settings["fused"] == []


def test_trt_feed_problems_are_bad_input_and_tensorrt_failures_are_not(tiny, fake_tensorrt, monkeypatch):
    with TrtRunner(tiny.path, BackendSpec.parse("trt-fp32"), cache=False) as r:
        with pytest.raises(BadInputError, match=r"input 'x' has shape \(1, 4, 8, 8\); the engine wants"):
            r.infer({"x": tiny.x[:, :, :8, :8]})
        with pytest.raises(BadInputError, match="unknown input name"):
            r.infer({"y": tiny.x})
        with pytest.raises(BadInputError, match="has dtype int32, the engine wants float32"):
            r.infer({"x": tiny.x.astype(np.int32)})
        fake_tensorrt.fail_run = True  # execute_async_v3 returns False: TensorRT failing, not the input
        with pytest.raises(BackendRuntimeError, match=r"TensorRT failed running trt-fp32 \(tiny.onnx\)") as err:
            r.infer({"x": tiny.x})
        assert err.value.exit_code == 3
        fake_tensorrt.fail_run = False

        def out_of_memory(*args):
            raise MemoryError("out of host memory")

        monkeypatch.setattr(r._session.buffers, "upload", out_of_memory)  # not TensorRT's: propagates as it is
        with pytest.raises(MemoryError):
            r.infer({"x": tiny.x})


def test_ort_session_errors_that_are_not_the_model_keep_their_type(tiny, monkeypatch):
    """Only ONNX Runtime's errors about the model become bad input (chained); an out-of-memory or a bug in
    cp_debug propagates with its traceback."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    def failing(error):
        def session(*args, **kwargs):
            raise error
        return session

    spec = BackendSpec.parse("ort")
    monkeypatch.setattr(ort, "InferenceSession", failing(state.Fail("[ONNXRuntimeError] : 1 : FAIL : bad node")))
    with pytest.raises(BadInputError, match="ONNX Runtime cannot load the model for ort-cpu-fp32: .*bad node") as err:
        OrtRunner(tiny.path, spec).activate()
    assert isinstance(err.value.__cause__, state.Fail)
    monkeypatch.setattr(ort, "InferenceSession", failing(state.NotImplemented("no kernel")))
    with pytest.raises(BackendUnavailableError, match="no kernel for a node"):
        OrtRunner(tiny.path, spec).activate()
    for error in (state.RuntimeException("Failed to allocate memory"), MemoryError(), KeyError("a bug")):
        monkeypatch.setattr(ort, "InferenceSession", failing(error))
        with pytest.raises(type(error)):
            OrtRunner(tiny.path, spec).activate()

"""The engine session and the TensorRT runner's inference path, against a FAKE engine (`fake_tensorrt.py`).

No TensorRT runtime can run here (TensorRT 10/11 cannot be installed; TensorRT-RTX's runtime refuses the project's
GPUs), so these tests check our side of the protocol only — shapes set, buffers bound by address, the dtype map, the
debug listener, the refusal and failure paths, the output map — with ONNX Runtime standing in for TensorRT's kernels.
They say nothing about TensorRT's own behaviour; the builder is tested for real in test_trt_rtx.py.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from cp_debug.backends.spec import BackendSpec
from cp_debug.backends.trt.trt_engine import EngineRefusedError, EngineSession, TorchBuffers, numpy_dtype
from cp_debug.backends.trt.trt_library import TensorRtLibrary
from cp_debug.backends.trt.trt_runner import TrtRunner
from cp_debug.errors import BackendRuntimeError, BadInputError
from tests.backends.fake_tensorrt import DataType, FakeTensorRt, install

RELU = "/Relu_output_0"
CONV2 = "/c2/Conv_output_0"


def _expected(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))


def test_a_session_binds_runs_and_hands_back_every_unfused_tensor(tiny):
    lib = TensorRtLibrary("trt-rtx", FakeTensorRt(fused={CONV2}), "1.7.1.116")
    session = EngineSession(lib, tiny.path.read_bytes(), what="tiny", debug=True, buffers=TorchBuffers("cpu")).open()
    assert session.context.unfused_tensors_debug_state  # as trtexec turns them on for --saveAllDebugTensors
    assert session.io() == {"x": (np.dtype(np.float32), [1, 4, 16, 16])}
    outputs, debug = session.infer({"x": tiny.x})
    want = _expected(tiny.path, tiny.x)
    assert set(outputs) == set(want)
    for name, value in want.items():
        np.testing.assert_array_equal(outputs[name], value)  # read back from the addresses the session bound
    assert RELU in debug and CONV2 not in debug  # fused: never handed to the listener
    assert all(isinstance(v, np.ndarray) and v.flags.owndata for v in debug.values())  # copies, not views
    again, debug2 = session.infer({"x": tiny.x * 2})
    assert not np.array_equal(again["out"], outputs["out"]) and set(debug2) == set(debug)
    session.close()


def test_a_refused_engine_is_one_line_with_the_library_s_reason(tiny):
    why = "Error Code 6: The engine cannot run on this GPU, which has compute capability 9.0."
    lib = TensorRtLibrary("trt-rtx", FakeTensorRt(refuse=f"IRuntime::deserializeCudaEngine: {why}"), "1.7.1.116")
    with pytest.raises(EngineRefusedError) as err:
        EngineSession(lib, tiny.path.read_bytes(), what="trt-rtx-fp16 (tiny.onnx)").open()
    assert err.value.exit_code == 3
    assert str(err.value) == ("TensorRT-RTX 1.7.1.116 built the engine of trt-rtx-fp16 (tiny.onnx) (it parses and "
                              f"builds) but cannot run it here: {why}")


def test_debug_tensors_numpy_cannot_hold_are_skipped_and_named():
    assert numpy_dtype(DataType.HALF) == np.float16 and numpy_dtype(DataType.BF16) is None
    from cp_debug.backends.trt.trt_engine import make_listener

    fake = FakeTensorRt()
    listener = make_listener(fake, TorchBuffers("cpu"))
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert listener.process_debug_tensor(value.ctypes.data, fake.TensorLocation.HOST, DataType.FLOAT, (2, 3), "a", 0)
    listener.process_debug_tensor(value.ctypes.data, fake.TensorLocation.HOST, DataType.BF16, (2, 3), "b", 0)
    np.testing.assert_array_equal(listener.tensors["a"], value)
    assert listener.skipped == {"b": "BF16"}


def test_the_runner_reads_probes_as_debug_tensors_and_reports_fused_ones(tiny, monkeypatch, tmp_path):
    fake = install(monkeypatch, "trt-rtx", fused={CONV2})
    spec = BackendSpec.parse("trt-rtx-fp32")
    with TrtRunner(tiny.path, spec, extra_outputs=[RELU, CONV2], cache_dir=tmp_path) as r:
        out = r.infer({"x": tiny.x})
        settings, report = r.settings(), r.precision_report()
        assert r.missing_outputs == [CONV2] and r.unobserved() == {CONV2: "fused: not observable in this engine"}
    plan = fake.built_plans[0]
    assert plan.probes == "debug" and plan.strongly_typed and plan.flags == ()  # TensorRT-RTX: typed, no flags
    want = _expected(tiny.path, tiny.x)
    assert set(out) == {"out", "mean", RELU}
    np.testing.assert_array_equal(out["out"], want["out"])
    assert settings["library"] == "TensorRT-RTX" and settings["tensorrt"] == "1.7.1.116"
    assert settings["fused"] == [CONV2] and settings["build"]["probes_read_as"] == "debug"
    assert any("fused" in n for n in report.notes) and report.effective == "fp32"  # the inspector's layers
    assert list(tmp_path.glob("*.engine"))  # kept in the cache folder, written whole


def test_an_engine_from_the_cache_is_not_built_again_and_the_runtime_cache_is_kept(tiny, monkeypatch, tmp_path):
    fake = install(monkeypatch, "trt-rtx")
    for _ in range(2):
        with TrtRunner(tiny.path, BackendSpec.parse("trt-rtx-fp16"), cache_dir=tmp_path) as r:
            r.infer({"x": tiny.x})
    assert len(fake.built_plans) == 1 and r.settings()["cache"].startswith("engine from the cache")
    kept = list(tmp_path.glob("*.runtime_cache"))  # TensorRT-RTX's just-in-time kernels, read back by the second
    assert len(kept) == 1 and kept[0].read_bytes() == b"fake runtime cache:2"


def test_build_without_running_then_the_refusal_after_it(tiny, monkeypatch, tmp_path):
    """`build()` checks the graph parses and builds without a runtime; activating then says why it cannot run."""
    fake = install(monkeypatch, "trt-rtx", refuse="Error Code 6: The engine cannot run on this GPU")
    r = TrtRunner(tiny.path, BackendSpec.parse("trt-rtx-fp16"), extra_outputs=[RELU], cache_dir=tmp_path)
    facts = r.build()
    assert facts.probes_requested == 1 and fake.built_plans[0].onnx_transform == "fp16"
    with pytest.raises(EngineRefusedError, match="cannot run it here: Error Code 6"):
        r.activate()
    assert len(fake.built_plans) == 1  # built once: activation found it


def test_a_dynamic_graph_builds_at_its_first_feed_and_refuses_feeds_outside_it(tiny, monkeypatch, tmp_path):
    import onnx

    model = onnx.load(str(tiny.path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    fake = install(monkeypatch, "trt-rtx")
    with TrtRunner(model, BackendSpec.parse("trt-rtx-fp32"), cache_dir=tmp_path) as r:
        assert not fake.built_plans  # built at the first feed
        r.infer({"x": tiny.x})
        assert r.profile["x"].min == r.profile["x"].max == (1, 4, 16, 16)
        with pytest.raises(BadInputError, match="outside the engine's optimization profile"):
            r.infer({"x": np.concatenate([tiny.x, tiny.x])})
    with pytest.raises(BadInputError, match="give a profile or a feed"):
        TrtRunner(model, BackendSpec.parse("trt-rtx-fp32"), cache_dir=tmp_path).build()


def test_a_failed_run_is_the_backend_s_error(tiny, monkeypatch, tmp_path):
    install(monkeypatch, "trt-rtx", fail_run=True)
    with TrtRunner(tiny.path, BackendSpec.parse("trt-rtx-fp32"), cache_dir=tmp_path) as r:
        with pytest.raises(BackendRuntimeError, match=r"TensorRT-RTX failed running trt-rtx-fp32 \(tiny.onnx\)"):
            r.infer({"x": tiny.x})

"""One contract test, parametrized over every runner spec: activate / infer / deactivate, names, dtypes, closeness;
and the optional abilities each runner declares (`Capability`), used or refused as declared."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.backends.base import PrecisionReport
from cp_debug.backends.factory import all_specs, check_available, make_runner, runs_here
from cp_debug.compare.diff import TensorDiff, default_tolerance
from cp_debug.errors import BackendUnavailableError, CpDebugError
from cp_debug.backends.spec import CAPABILITIES, BackendSpec, Capability

SPECS = [str(s) for s in all_specs()]
CONV2 = "/c2/Conv_output_0"  # the second conv's output tensor in the tiny net's ONNX export


@pytest.fixture(scope="module")
def reference(tiny):
    with make_runner(BackendSpec.parse("torch"), torch_module=tiny.module, input_names=tiny.input_names,
                     output_names=tiny.output_names) as r:
        return r.infer({"x": tiny.x})


@pytest.fixture(scope="module")
def tiny_fakequant(tiny):
    """The tiny net with calibrated fake quantizers (max, on its calibration feeds), quantizers off: what
    `bisect --int8` gives torch-*-int8 to run."""
    import copy

    import torch

    from cp_debug.quant.calibrate import calibrate
    from cp_debug.quant.quantizers import insert_quantizers, plan_quantization, set_enabled

    model = copy.deepcopy(tiny.module).eval()
    insert_quantizers(model, plan_quantization(model))

    def loop(m):
        for feed in tiny.calib:
            m(torch.from_numpy(feed["x"]))
        return len(tiny.calib)

    with torch.no_grad():
        calibrate(model, loop, method="max")
    set_enabled(model, False)
    return model


@pytest.mark.parametrize("spec", SPECS)
def test_runner_contract(spec, tiny, reference, tiny_fakequant):
    try:
        check_available(BackendSpec.parse(spec))
    except BackendUnavailableError as err:
        pytest.skip(str(err))
    if not runs_here(BackendSpec.parse(spec)):  # TensorRT-RTX without a GPU it runs on: builds in test_trt_rtx.py
        pytest.skip(f"{spec} builds here but cannot run: not run")
    x, names = tiny.x, tiny.output_names
    module = tiny_fakequant if spec.startswith("torch") and spec.endswith("int8") else tiny.module
    runner = make_runner(BackendSpec.parse(spec), torch_module=module, onnx_model=tiny.path,
                         input_names=tiny.input_names, output_names=names, calib_feeds=tiny.calib)
    assert not runner.is_active
    assert runner.precision_report() is None  # nothing ran yet
    with pytest.raises(CpDebugError, match="not active"):
        runner.infer({"x": x})

    with runner as r:
        assert r is runner and r.is_active
        out = r.infer({"x": x})
        assert list(out) == names
        precision = r.spec.precision
        tol = default_tolerance(precision)
        for name in names:
            assert out[name].dtype == np.float32
            assert out[name].shape == reference[name].shape
            diff = TensorDiff.from_arrays(name, reference[name], out[name], tol)
            assert diff.status == "ok", (spec, name, diff)
        again = r.infer({"x": x})
        for name in names:  # deterministic
            np.testing.assert_array_equal(again[name], out[name])
        report = r.precision_report()
        assert isinstance(report, PrecisionReport) and report.requested == precision
        assert isinstance(r.settings(), dict) and r.settings()
    assert not runner.is_active
    assert runner.precision_report() == report  # what was learnt stays readable after deactivate

    # explicit activate / deactivate, twice: a runner can be reused
    runner.activate()
    try:
        np.testing.assert_array_equal(runner.infer({"x": x})["out"], out["out"])
    finally:
        runner.deactivate()
    runner.deactivate()  # idempotent
    assert not runner.is_active


@pytest.mark.parametrize("spec", SPECS)
def test_runner_capabilities(spec, tiny, tiny_fakequant):
    """A runner declares what its spec declares (before anything runs); a declared ability works, one it lacks is a
    NotImplementedError naming it; every runner reports missing probes (a list) the same way."""
    bspec = BackendSpec.parse(spec)
    module = tiny_fakequant if bspec.is_torch and bspec.precision == "int8" else tiny.module
    runner = make_runner(bspec, torch_module=module, onnx_model=tiny.path, input_names=tiny.input_names,
                         output_names=tiny.output_names, calib_feeds=tiny.calib, probe_modules=["c2"],
                         capture_inputs=True, extra_outputs=[CONV2])
    assert runner.capabilities == bspec.capabilities == CAPABILITIES[bspec.framework]
    assert all(runner.can(c) == (c in bspec.capabilities) for c in Capability)
    assert bspec.runs_onnx == (not bspec.is_torch) == (bspec.framework != "torch")
    assert runner.missing_outputs == []  # nothing prepared yet
    try:
        check_available(bspec)
    except BackendUnavailableError as err:
        pytest.skip(str(err))
    if not runs_here(bspec):  # TensorRT-RTX without a GPU it runs on: its builds are tested in test_trt_rtx.py
        pytest.skip(f"{spec} builds here but cannot run: not run")
    with runner as r:
        out = r.infer({"x": tiny.x})
        assert r.missing_outputs == []
        if r.can(Capability.INFER_SOME):
            assert set(r.infer_some({"x": tiny.x}, [])) == set(tiny.output_names)
        else:
            with pytest.raises(NotImplementedError, match="cannot infer_some"):
                r.infer_some({"x": tiny.x}, [])
        if r.can(Capability.RUN_SUBMODULE):
            alone = r.run_submodule("c2", (out["c2:in0"],))
            np.testing.assert_array_equal(alone, out["c2"])
        else:
            with pytest.raises(NotImplementedError, match="cannot run_submodule"):
                r.run_submodule("c2", (tiny.x,))
        if r.can(Capability.DEVICE_TENSORS):  # torch tensors in and out (probes too): the numbers of `infer`
            import torch

            dev = r.infer_device({"x": torch.from_numpy(tiny.x)})
            assert set(dev) == set(out) and all(isinstance(v, torch.Tensor) for v in dev.values())
            for name, value in out.items():
                np.testing.assert_array_equal(dev[name].cpu().numpy(), value)
        else:
            with pytest.raises(NotImplementedError, match="cannot device_tensors"):
                r.infer_device({"x": tiny.x})
        if r.can(Capability.STREAM_PROBES):  # module probes handed over as produced, not kept in the result
            seen = {}
            r.on_probe = seen.__setitem__
            assert "c2" not in r.infer({"x": tiny.x}) and "c2" in seen
        assert r.quant_amax() == {} or bspec.calibrated


def test_torch_int8_refuses_a_model_without_quantizers(tiny):
    runner = make_runner(BackendSpec.parse("torch-cpu-int8"), torch_module=tiny.module, input_names=tiny.input_names,
                         output_names=tiny.output_names)
    with pytest.raises(CpDebugError, match="--int8 DIR"):
        runner.activate()
    assert not runner.is_active


def test_torch_int8_turns_only_its_copy_on(tiny_fakequant, tiny):
    from cp_debug.quant.quantizers import tensor_quantizers

    with make_runner(BackendSpec.parse("torch-cpu-int8"), torch_module=tiny_fakequant, input_names=tiny.input_names,
                     output_names=tiny.output_names) as r:
        q = r.infer({"x": tiny.x})["out"]
        assert r.settings()["fake_quant_layers"] >= 1
    assert not any(t.enabled for t in tensor_quantizers(tiny_fakequant))  # the FP32 source stays FP32
    with make_runner(BackendSpec.parse("torch"), torch_module=tiny_fakequant, input_names=tiny.input_names,
                     output_names=tiny.output_names) as r:
        f = r.infer({"x": tiny.x})["out"]
    assert 0 < np.abs(q - f).max() < 0.1 * np.abs(f).max()


def test_ort_int8_model_runs_the_given_qdq_graph(tiny_fakequant, tiny, tmp_path):
    """`int8_model=`: ORT runs the Q/DQ export of the fake-quant net as it is (no calibration of its own) and
    agrees with torch-cpu-int8 to float rounding; a probe tensor the Q/DQ graph lacks is missing, not guessed."""
    import warnings

    import onnx
    import torch

    from cp_debug.quant.quantizers import calibrated_on

    path = tmp_path / "qdq.onnx"
    with calibrated_on(tiny_fakequant), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny_fakequant, (torch.from_numpy(tiny.x),), str(path), input_names=tiny.input_names,
                          output_names=tiny.output_names, dynamo=False, opset_version=17)
    assert sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node) >= 2
    with make_runner(BackendSpec.parse("ort-cpu-int8"), onnx_model=tiny.path, int8_model=path,
                     extra_outputs=["not_in_the_qdq_graph"]) as r:
        got = r.infer({"x": tiny.x})["out"]
        assert r.missing_outputs == ["not_in_the_qdq_graph"]
        assert r.settings()["precision_transform"]["kind"] == "qdq_model"
    with make_runner(BackendSpec.parse("torch-cpu-int8"), torch_module=tiny_fakequant, input_names=tiny.input_names,
                     output_names=tiny.output_names) as r:
        want = r.infer({"x": tiny.x})["out"]
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()  # measured: 6e-8 of 0.52

"""plan_build for TensorRT 10 vs 11 (no TensorRT needed), availability, `cpdebug backends`, make_runner dispatch."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from cp_debug.backends.factory import all_specs, availability, check_available, make_runner
from cp_debug.backends.trt_runner import BuildPlan, TrtRunner, plan_build
from cp_debug.errors import BackendUnavailableError, BadInputError
from cp_debug.backends.spec import BackendSpec


@pytest.mark.parametrize("spec,major,plan", [
    ("trt-fp32", 10, BuildPlan("none", False, (), False)),
    ("trt-tf32", 10, BuildPlan("none", False, (), True)),
    ("trt-fp16", 10, BuildPlan("none", False, ("fp16",), False)),
    ("trt-bf16", 10, BuildPlan("none", False, ("bf16",), False)),
    ("trt-int8", 10, BuildPlan("int8_qdq", False, ("int8",), False)),
    ("trt-fp32", 11, BuildPlan("none", True, (), False)),
    ("trt-tf32", 11, BuildPlan("none", True, (), True)),
    ("trt-fp16", 11, BuildPlan("fp16", True, (), False)),
    ("trt-int8", 11, BuildPlan("int8_qdq", True, (), False)),
    ("trt-fp16", 12, BuildPlan("fp16", True, (), False)),
])
def test_plan_build(spec, major, plan):
    assert plan_build(BackendSpec.parse(spec), major) == plan


def test_plan_build_refusals():
    with pytest.raises(BackendUnavailableError, match="BF16 ONNX graph"):
        plan_build(BackendSpec.parse("trt-bf16"), 11)
    with pytest.raises(BackendUnavailableError, match="too old"):
        plan_build(BackendSpec.parse("trt-fp16"), 8)
    with pytest.raises(BadInputError):
        plan_build(BackendSpec.parse("ort-cpu-fp16"), 10)


def test_trt_unavailable_here(tiny):
    try:
        import tensorrt  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("TensorRT is installed")
    runner = TrtRunner(tiny.path, BackendSpec.parse("trt-fp16"))  # constructing does nothing
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 10\+.*cp-debug\[trt\]"):
        runner.activate()
    with pytest.raises(BackendUnavailableError):
        check_available(BackendSpec.parse("trt-fp16"))


def test_availability_rows():
    rows = availability()
    assert [r[0] for r in rows] == [str(s) for s in all_specs()] + ["trt-*@KIT"]
    by = {s: (ok, why) for s, ok, why in rows}
    assert by.pop("trt-*@KIT")[0]  # a kit's results are read here without TensorRT
    assert by["torch-cpu-fp32"][0] and by["ort-cpu-int8"][0]
    for spec, (ok, why) in by.items():
        assert why and "\n" not in why
        if not ok:
            with pytest.raises(BackendUnavailableError):
                check_available(BackendSpec.parse(spec))


def test_backends_command_prints_table_and_json():
    from cp_debug.cli.backends_cmd import backends

    app = typer.Typer()
    app.command()(backends)
    res = CliRunner().invoke(app, [], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "ort-cpu-int8" in res.output and "trt-fp16" in res.output
    res = CliRunner().invoke(app, ["--json"])
    rows = json.loads(res.output)
    assert {"spec", "available", "reason"} <= set(rows[0])


def test_make_runner_dispatch(tiny):
    with pytest.raises(BadInputError, match="PyTorch model"):
        make_runner(BackendSpec.parse("torch"), onnx_model=tiny.path)
    with pytest.raises(BadInputError, match="ONNX model"):
        make_runner(BackendSpec.parse("ort-cpu-fp16"), torch_module=tiny.module)
    with pytest.raises(TypeError, match="bogus"):
        make_runner(BackendSpec.parse("ort"), onnx_model=tiny.path, bogus=1)
    # torch-only option ignored
    r = make_runner(BackendSpec.parse("ort"), onnx_model=tiny.path, probe_modules=["c1"], threads=1)
    assert r.threads == 1 and not r.is_active

"""The TensorRT build plan per version (pure: no TensorRT needed): typing, precision flags, debug tensors or marked
outputs, prebuilt engines, the builder flags set or cleared, cache keys, profiles; TensorRT for RTX beside it."""

from __future__ import annotations

import pytest

from cp_debug.backends.spec import BackendSpec
from cp_debug.backends.trt.trt_plan import (OUTPUTS_NOTE, BuildPlan, builder_flags, cache_key, default_cache_dir,
                                        parse_version, plan_build, plan_prebuilt, prebuilt_engine)
from cp_debug.backends.trt.trt_profile import ShapeRange, check_within
from cp_debug.errors import BackendUnavailableError, BadInputError

T10, T10_12, T11 = (10, 8), (10, 12), (11, 0)


@pytest.mark.parametrize("spec,version,held,plan", [
    # TensorRT 10, an FP32 file: weakly typed; FP16/BF16 through the builder flag (as a TensorRT 10 deployment does)
    ("trt-fp32", T10, "fp32", BuildPlan("none", False)),
    ("trt-tf32", T10, "fp32", BuildPlan("none", False, (), True)),
    ("trt-fp16", T10, "fp32", BuildPlan("none", False, ("fp16",))),
    ("trt-bf16", T10, "fp32", BuildPlan("none", False, ("bf16",))),
    # TensorRT 10, the ONNX carries its precision (our Q/DQ, or a deployed FP16 / Q/DQ file): strongly typed
    ("trt-int8", T10, "fp32", BuildPlan("int8_qdq", True)),
    ("trt-fp16", T10, "fp16", BuildPlan("none", True, notes=("the ONNX carries fp16: run as it is, strongly typed",))),
    ("trt-fp32", T10, "int8", BuildPlan("none", True, notes=("the ONNX carries int8: run as it is, strongly typed",))),
    ("trt-int8", T10, "int8", BuildPlan("none", True, notes=("the ONNX carries int8: run as it is, strongly typed",))),
    # TensorRT ≥ 11: strongly typed always, precision from the ONNX, no flags
    ("trt-fp32", T11, "fp32", BuildPlan("none", True)),
    ("trt-tf32", T11, "fp32", BuildPlan("none", True, (), True)),
    ("trt-fp16", T11, "fp32", BuildPlan("fp16", True)),
    ("trt-int8", T11, "fp32", BuildPlan("int8_qdq", True)),
    ("trt-fp16", (12, 1), "fp32", BuildPlan("fp16", True)),
    ("trt-fp16", T11, "fp16", BuildPlan("none", True, notes=("the ONNX carries fp16: run as it is, strongly typed",))),
])
def test_plan_build_typing_and_precision(spec, version, held, plan):
    assert plan_build(BackendSpec.parse(spec), version, held=held) == plan


@pytest.mark.parametrize("version,mode", [((10, 0), "outputs"), ((10, 11), "outputs"), (T10_12, "debug"),
                                          ((10, 16), "debug"), (T11, "debug")])
def test_probes_are_debug_tensors_from_10_12_and_marked_outputs_before_said_so(version, mode):
    plan = plan_build(BackendSpec.parse("trt-fp16"), version, probes=True)
    assert plan.probes == mode
    assert (OUTPUTS_NOTE in plan.notes) == (mode == "outputs")
    assert plan_build(BackendSpec.parse("trt-fp16"), version).probes == "none"  # nothing beyond the outputs


@pytest.mark.parametrize("spec,held,plan", [
    ("trt-rtx-fp32", "fp32", BuildPlan("none", True, probes="debug")),
    ("trt-rtx-tf32", "fp32", BuildPlan("none", True, (), True, probes="debug")),
    ("trt-rtx-fp16", "fp32", BuildPlan("fp16", True, probes="debug")),
    ("trt-rtx-int8", "fp32", BuildPlan("int8_qdq", True, probes="debug")),
    ("trt-rtx-fp16", "fp16", BuildPlan("none", True, probes="debug",
                                       notes=("the ONNX carries fp16: run as it is, strongly typed",))),
])
def test_tensorrt_rtx_plans_as_tensorrt_11_does_with_debug_tensors_from_its_first_version(spec, held, plan):
    """TensorRT for RTX is strongly typed only (precision from the ONNX, no builder flag) and has debug tensors of
    every unfused tensor in every 1.x release."""
    assert plan_build(BackendSpec.parse(spec), (1, 7), held=held, probes=True) == plan
    assert plan_build(BackendSpec.parse(spec), (1, 0), held=held, probes=True) == plan
    assert builder_flags(plan, "trt-rtx", (1, 7)) == {"TF32": plan.tf32}


def test_refusals():
    with pytest.raises(BackendUnavailableError, match="BF16"):
        plan_build(BackendSpec.parse("trt-bf16"), T11)
    with pytest.raises(BackendUnavailableError, match="BF16"):
        plan_build(BackendSpec.parse("trt-bf16"), T10, held="fp16")
    with pytest.raises(BackendUnavailableError, match="too old"):
        plan_build(BackendSpec.parse("trt-fp16"), (8, 6))
    with pytest.raises(BadInputError):
        plan_build(BackendSpec.parse("ort-cpu-fp16"), T10)
    with pytest.raises(BackendUnavailableError, match="TensorRT-RTX 0.9 is too old"):
        plan_build(BackendSpec.parse("trt-rtx-fp16"), (0, 9))


@pytest.mark.parametrize("spec", ["trt-fp32", "trt-tf32", "trt-fp16", "trt-int8"])
@pytest.mark.parametrize("held", ["fp32", "fp16", "int8"])
def test_tensorrt_11_gets_no_precision_flag_calibrator_or_selector(spec, held):
    """Whatever the spec and the file: the builder sets or clears TF32 alone on TensorRT 11 (fp16/int8/bf16/fp8
    flags, calibrators, the algorithm selector and precision constraints are gone there)."""
    plan = plan_build(BackendSpec.parse(spec), T11, held=held, probes=True)
    assert plan.strongly_typed and plan.flags == ()
    assert builder_flags(plan, "trt", T11) == {"TF32": spec == "trt-tf32"}


def test_tensorrt_10_flags_only_on_weakly_typed_networks():
    flagged = plan_build(BackendSpec.parse("trt-fp16"), T10)
    assert builder_flags(flagged, "trt", T10) == {"TF32": False, "FP16": True}
    typed = plan_build(BackendSpec.parse("trt-int8"), T10)
    assert builder_flags(typed, "trt", T10) == {"TF32": False}  # strongly typed Q/DQ: no INT8 flag
    with pytest.raises(ValueError, match="builder flags"):  # a plan that would reach a removed flag is a bug
        builder_flags(BuildPlan("none", True, ("fp16",)), "trt", T11)
    with pytest.raises(ValueError, match="builder flags"):
        builder_flags(BuildPlan("none", True, ("fp16",)), "trt-rtx", (1, 7))


def test_prebuilt_engines(tmp_path):
    assert prebuilt_engine(tmp_path, "pts_backbone_neck_head") is None
    assert prebuilt_engine(None, "x") is None
    (tmp_path / "pts_backbone_neck_head.plan").write_bytes(b"x")
    found = prebuilt_engine(tmp_path, "pts_backbone_neck_head")
    assert found == tmp_path / "pts_backbone_neck_head.plan"
    plan = plan_prebuilt(BackendSpec.parse("trt-fp16"), found)
    assert plan.prebuilt and plan.probes == "engine" and plan.onnx_transform == "none"
    assert "nothing rebuilt" in plan.notes[0] and "debug tensors" in plan.notes[0]
    (tmp_path / "pts_backbone_neck_head.engine").write_bytes(b"x")
    with pytest.raises(BadInputError, match="keep one engine per stage"):
        prebuilt_engine(tmp_path, "pts_backbone_neck_head")


def test_cache_keys_change_with_each_part(monkeypatch, tmp_path):
    base = cache_key("a" * 64, "10.12.0.36", {"plan": {"flags": []}})
    assert base == cache_key("a" * 64, "10.12.0.36", {"plan": {"flags": []}})
    assert len({base, cache_key("b" * 64, "10.12.0.36", {"plan": {"flags": []}}),
                cache_key("a" * 64, "10.12.0.37", {"plan": {"flags": []}}),
                cache_key("a" * 64, "10.12.0.36", {"plan": {"flags": ["fp16"]}})}) == 4
    monkeypatch.delenv("CPDEBUG_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "cp_debug" / "tensorrt"
    monkeypatch.setenv("CPDEBUG_CACHE_DIR", str(tmp_path / "mine"))  # one folder for every cache of cp_debug
    assert default_cache_dir() == tmp_path / "mine" / "tensorrt"


def test_parse_version():
    assert parse_version("10.12.0.36") == (10, 12)
    assert parse_version("11.0.0.114") == (11, 0)
    assert parse_version("10") == (10, 0)
    assert parse_version("unknown") == (0, 0)


def test_a_feed_outside_the_profile_is_one_line():
    prof = {"input_features": ShapeRange((1, 32, 9), (20000, 32, 9), (40000, 32, 9))}
    check_within(prof, {"input_features": (123, 32, 9)})
    with pytest.raises(BadInputError, match=r"input 'input_features' has shape 40001x32x9, outside the engine's "
                                            r"optimization profile \(min 1x32x9, max 40000x32x9\)"):
        check_within(prof, {"input_features": (40001, 32, 9)})
    with pytest.raises(BadInputError, match="outside"):
        check_within(prof, {"input_features": (12, 32)})


def test_an_engine_built_at_its_first_feed_covers_the_capped_axes_from_one():
    """No profile given, dynamic axes: the first feed's shapes; an axis the deployment caps runs from 1 to the cap,
    so every later frame of that deployment fits; the other axes stay as fed (a later change is one line)."""
    from cp_debug.backends.trt.trt_runner import _first_feed_profile

    prof = _first_feed_profile({"input_features": (18000, 32, 9)}, {"input_features": {0: 40000}})
    assert prof["input_features"] == ShapeRange((1, 32, 9), (18000, 32, 9), (40000, 32, 9))
    check_within(prof, {"input_features": (25000, 32, 9)})
    with pytest.raises(BadInputError, match="outside"):
        check_within(prof, {"input_features": (25000, 20, 9)})
    assert _first_feed_profile({"x": (1, 4)}, {})["x"] == ShapeRange((1, 4), (1, 4), (1, 4))

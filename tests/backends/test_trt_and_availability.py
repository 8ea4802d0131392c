"""Availability, `cpdebug backends`, make_runner dispatch (the TensorRT build plan: test_trt_plan.py)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from cp_debug.backends.factory import all_specs, availability, check_available, make_runner
from cp_debug.backends.trt.trt_runner import TrtRunner
from cp_debug.errors import BackendUnavailableError, BadInputError
from cp_debug.backends.spec import BackendSpec


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
    assert "trt-*@KIT" in res.output and "prebuilt engines" in res.output
    res = CliRunner().invoke(app, ["--json"])
    out = json.loads(res.output)
    assert {"spec", "available", "reason"} <= set(out["specs"][0])
    paths = out["tensorrt_paths"]
    assert [p["path"].split(" ")[0] for p in paths] == ["trt-*", "trt-rtx-*", "trt-*@DIR", "trt-*@KIT"]
    assert all(isinstance(s["runs_here"], bool) for s in out["specs"])


def test_tensorrt_paths_say_why_not_here():
    from cp_debug.backends.factory import tensorrt_paths

    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    else:
        pytest.skip("TensorRT is installed")
    built, rtx, prebuilt, kit = tensorrt_paths()
    assert not built[1] and not prebuilt[1] and "cp-debug[trt]" in built[2]
    assert "no TensorRT needed" in kit[0]
    assert "TensorRT for RTX" in rtx[0] and ("builds here" in rtx[2] or "cp-debug[trt-rtx]" in rtx[2])


def test_tensorrt_rtx_is_listed_as_building_here_and_running_only_on_its_gpus():
    """Where TensorRT-RTX is installed and no GPU it supports is here (the CPU machine, an H100): 'builds only'."""
    from cp_debug.backends.factory import runs_here
    from cp_debug.backends.trt.trt_library import load_library

    try:
        load_library("trt-rtx")
    except BackendUnavailableError as err:
        assert "pip install 'cp-debug[trt-rtx]'" in str(err)  # without the wheels: how to install them
        return
    rows = {s: (ok, why) for s, ok, why in availability()}
    ok, why = rows["trt-rtx-fp16"]
    assert ok and "builds here" in why and "8.0, 8.6, 8.9 and 12.x" in why
    assert not runs_here(BackendSpec.parse("trt-rtx-fp16"), {"gpu": None})
    assert not runs_here(BackendSpec.parse("trt-rtx-fp16"), {"gpu": "NVIDIA H100 80GB HBM3", "gpu_capability": "9.0"})
    assert runs_here(BackendSpec.parse("trt-rtx-fp16"), {"gpu": "NVIDIA GeForce RTX 4090", "gpu_capability": "8.9"})
    assert runs_here(BackendSpec.parse("trt-rtx-fp16"), {"gpu": "NVIDIA RTX PRO 6000", "gpu_capability": "12.0"})
    assert runs_here(BackendSpec.parse("ort-cpu-fp16"), {"gpu": None})


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


def test_without_tensorrt_rtx_backends_says_how_to_install_it(monkeypatch):
    """The wheels absent (their import fails): every trt-rtx-* row is unavailable and names the extra to install."""
    import sys

    from cp_debug.backends.trt import trt_library

    for name in ("tensorrt_rtx", "tensorrt_rtx_bindings"):
        monkeypatch.setitem(sys.modules, name, None)  # `import` of it raises ImportError, as when not installed
    monkeypatch.setattr(trt_library, "_load", trt_library._load.__wrapped__)  # no import remembered from before
    rows = {s: (ok, why) for s, ok, why in availability() if s.startswith("trt-rtx")}
    assert set(rows) == {"trt-rtx-fp32", "trt-rtx-tf32", "trt-rtx-fp16", "trt-rtx-int8"}
    for ok, why in rows.values():
        assert not ok and "pip install 'cp-debug[trt-rtx]'" in why and "tensorrt-rtx-cu13-libs" in why
    with pytest.raises(BackendUnavailableError, match=r"cp-debug\[trt-rtx\]"):
        check_available(BackendSpec.parse("trt-rtx-fp16"))

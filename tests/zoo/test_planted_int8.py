"""Planted INT8 outliers in models no one here tuned for (issue 55): a CNN (torchvision's resnet18) and a transformer
(the hand-written text model), each with two outlier channels that set a tensor's per-tensor INT8 range. The bisect
names the layer that reads them, with the share of values that round to zero; leaving it out of INT8 is tried on
the segment and called a cure only when it is one; the bundle reproduces with numpy and onnxruntime alone.
Asserted on verdicts and names, never on bits: another CPU may round an INT8 element one step apart."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_run import cpdebug
from tests.zoo import models

ZOO = Path(models.__file__)


def _bisect(tmp_path: Path, build: str, backends: str, *extra: str):
    out = tmp_path / f"{build}.json"
    proc = cpdebug("bisect", "--torch", f"{ZOO}:{build}", "--backends", backends, "--json", out, *extra)
    return proc, json.loads(out.read_text())


def _repro_imports(bundle: Path) -> set[str]:
    """The top-level modules repro.py imports, read from its source."""
    tree = ast.parse((bundle / "repro.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return {n.split(".")[0] for n in names}


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
@pytest.mark.parametrize("build, module, op, others, ranged", [
    # conv2, its BatchNorm folded in: bn2's row; the ladder's calibration rung cures it (int8_range_rung.py): its
    # input quantized at the other channels' range, the two outlier channels saturating there
    ("build_resnet_int8_planted", "layer2.0.bn2", "Conv", "", True),
    # the plant moves no value out of FP16's range: FP32 and FP16 stay within precision beside INT8
    ("build_text_int8_planted", "blocks.0.mlp.2", "MatMul", ",ort,ort-cpu-fp16", False),
])
def test_planted_int8_outliers_are_named_with_the_share_lost_and_a_verified_cure_that_reproduces(
        tmp_path, build, module, op, others, ranged):
    bundle = tmp_path / "bundle"
    proc, report = _bisect(tmp_path, build, "torch,ort-cpu-int8" + others, "--bundle", bundle)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert {c: report["first_divergent"][c] for c in others.split(",")[1:]} == dict.fromkeys(others.split(",")[1:])
    rc = report["root_cause"]["ort-cpu-int8"]
    assert rc["probe"] == module
    hint = rc["hint"]
    assert hint.startswith(f"INT8 resolution lost at {module}: {op} "), hint
    lost = float(re.search(r": (\d+)% of its nonzero values round to zero", hint).group(1))
    assert lost > 90  # two channels x1e3 set the range: nearly every other value is below half a step
    if ranged:  # the smaller rung first: a range for this one tensor, with ONNX Runtime's override to set it
        assert re.search(r"verified: within precision with '[^']+' quantized at ±[\d.e+-]+ \(the largest \|x\| of "
                         r"the other channels: the 2 outlier channels saturate; calibrated at ±", hint), hint
        assert "'TensorQuantOverrides'" in hint, hint
    else:
        assert f"verified: within precision with {module}: {op} " in hint, hint
        assert "left out of INT8 (--exclude-int8 " in hint, hint
    before, after, budget = map(float, re.search(
        r"local rel\. RMSE ([\d.e+-]+) → ([\d.e+-]+), int8's budget ([\d.e+-]+)", hint).groups())
    assert after <= budget < before
    assert "exclude this layer from INT8" not in hint  # the probe's unverified advice gives way to the tried one

    assert "does not reproduce" not in proc.stderr + proc.stdout
    # numpy and onnxruntime (TensorRT only behind its --trt switch): nothing of cp_debug, torch or onnx
    assert _repro_imports(bundle) <= set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "tensorrt",
                                                                     "polygraphy"}
    rep = subprocess.run([sys.executable, "repro.py"], cwd=bundle, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 1 and "REPRODUCED" in rep.stdout, rep.stdout[-1500:] + rep.stderr[-1500:]



def _calib(tmp_path: Path, name: str, scale: float) -> Path:
    """Eight samples drawn as the example input is, times `scale`."""
    import numpy as np

    path = tmp_path / f"{name}.npz"
    x = np.random.default_rng(1).standard_normal((8, 1, 3, 32, 32)) * scale
    np.savez(path, input0=x.astype(np.float32))
    return path


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_one_outlier_channel_is_named_at_the_default_level_with_the_share_rounded_to_zero(tmp_path):
    """Issue 69: one channel ×100 leaves a third of the values, not most, below half a step; the default level
    names conv2 (bn2's row) and the one outlier channel of 128, with the share lost as its number."""
    proc, report = _bisect(tmp_path, "build_resnet_int8_one_channel", "torch,ort-cpu-int8")
    assert proc.returncode in (1, 4), proc.stdout[-2000:]
    rc = report["root_cause"]["ort-cpu-int8"]
    assert rc["probe"] == "layer2.0.bn2"
    hint = rc["hint"]
    assert hint.startswith("INT8 resolution lost at layer2.0.bn2: Conv "), hint
    assert "a range set by 1 outlier channel of 128" in hint
    lost = float(re.search(r": (\d+)% of its nonzero values round to zero", hint).group(1))
    assert 15 < lost < 60  # 33% on AMX; another CPU's kernels move no reference value
    assert "calibration set" not in hint  # calibrated on the input itself: its fit is exact


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
@pytest.mark.parametrize("twin, scale, said", [
    # the root cause is the layer whose own error stands furthest beyond its budget (the outlier channel's conv): the
    # fit is read at its segment's input, which a calibration at a fifth of the input's scale saturates as well
    ("build_resnet_int8_one_channel", 0.2, r"does not cover this input: '[^']+' is calibrated at ±[\d.]+ and the input "
                                           r"reaches \|x\| [\d.]+ \([\d.]+× its range\): ([\d.]+)% of its values"),
    ("build_resnet_int8_twin", None, None),  # calibrated on the input: the healthy twin within precision
])
def test_the_calibration_sets_fit_to_the_input_is_said_with_its_numbers(tmp_path, twin, scale, said):
    calib = ("--calib", _calib(tmp_path, twin, scale)) if scale else ()
    proc, report = _bisect(tmp_path, twin, "torch,ort-cpu-int8", *calib)
    if said is None:
        assert proc.returncode == 0 and report["first_divergent"]["ort-cpu-int8"] is None, proc.stdout[-2000:]
        assert "calibration set" not in proc.stdout
        return
    assert proc.returncode in (1, 4), proc.stdout[-2000:]
    hint = report["root_cause"]["ort-cpu-int8"]["hint"]
    m = re.search(said, hint)
    assert m and float(m.group(1)) > 10, hint  # 42%: a calibration at a fifth of the input's scale saturates it

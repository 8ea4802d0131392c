"""INT8 tells one story at every level (issue 84, item 4; bisect/findings/int8_story.py): torchvision's MobileNetV2
with one
depthwise output channel ×1000 (tests/bisect/int8_mobilenet.py) — the channel sets its conv output's per-tensor range
and 99% of the other values round to zero, while that output's relative error, dominated by the big channel, stays
small. Block probes and `--level all` name the same conv (block probes: the block holding it, the finding naming the
conv inside; every module: the conv itself), with the range that loses the values — not the largest of many
rounding-sized local errors two blocks away."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.slow  # scheduled first under xdist (tests/conftest.py)

MODELS = Path(__file__).with_name("int8_mobilenet.py")
CONV = "features.5.conv.1.1"  # the depthwise conv with its BatchNorm folded in (features.5.conv.1.0 + .1)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.parametrize("level", ["block", "all"])
def test_the_depthwise_plant_is_named_at_its_conv_at_every_level(tmp_path, level):
    proc = cpdebug("bisect", "--torch", f"{MODELS}:depthwise", "-b", "torch,ort-cpu-int8", "--level", level,
                   "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-int8"]
    hint = cause["hint"]
    if level == "all":
        assert cause["probe"] == CONV, cause
        assert hint.startswith("INT8 resolution lost:") and "set by outliers" in hint, hint
    else:  # the block that holds the conv; the finding names the conv inside it
        assert cause["probe"] == "features.5", cause
        assert hint.startswith(f"INT8 resolution lost after {CONV}: Conv"), hint
        assert "a range set by 1 outlier channel of" in hint, hint
    lost = float(hint.split("% of ")[0].rsplit(" ", 1)[1])
    assert lost > 90, hint


def _held_out(tmp_path: Path) -> Path:
    """Eight samples drawn as the example input is (standard normal), none of them the input: a calibration set."""
    import numpy as np

    path = tmp_path / "calib.npz"
    np.savez(path, input0=np.random.default_rng(2).standard_normal((8, 1, 3, 64, 64)).astype(np.float32))
    return path


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.parametrize("level", ["block", "all"])
def test_a_healthy_model_calibrated_on_held_out_samples_is_within_int8_s_noise_and_its_twin_is_named(
        tmp_path, level):
    """Issue 84, item 4: calibrated on samples other than the input (its range fits the input less tightly than
    the input's own), the healthy MobileNetV2 is within INT8's expected rounding at block and `--level all` alike
    (exit 0, no root cause), and the depthwise plant calibrated on the same samples is still named at its conv."""
    calib = _held_out(tmp_path)
    proc = cpdebug("bisect", "--torch", f"{MODELS}:healthy", "-b", "torch,ort-cpu-int8", "--level", level,
                   "--calib", calib, "--json", tmp_path / "healthy.json", "--quiet")
    report = json.loads((tmp_path / "healthy.json").read_text())
    assert proc.returncode == 0, report["outcome_reasons"]
    assert report["outcomes"]["ort-cpu-int8"] == "within_precision"
    assert report["root_cause"]["ort-cpu-int8"] is None

    proc = cpdebug("bisect", "--torch", f"{MODELS}:depthwise", "-b", "torch,ort-cpu-int8", "--level", level,
                   "--calib", calib, "--json", tmp_path / "planted.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "planted.json").read_text())["root_cause"]["ort-cpu-int8"]
    # named at its conv at either level (issue 115, item 5: the built-in's segments cut from its run's Q/DQ graph, at
    # the held-out calibration's scales, not each calibrated afresh on its own feed: features.5's own error 0.15,
    # not 0.03, so the block is opened to its layers; before, "features.5 … INT8 resolution lost after" the conv)
    assert cause["probe"] == CONV, cause
    assert "INT8 resolution lost" in cause["hint"] and "99% of" in cause["hint"], cause["hint"]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_issue_84_s_case_range_passes_its_segment_and_is_not_offered_where_the_outputs_get_worse(tmp_path):
    """The issue's MobileNetV2 (width 1.0, 96×96, one depthwise channel ×100) at `--level all`: the conv's output range
    is set by the planted channel (negative: the ReLU6 after it passes none of it) and rounds most of the others to
    zero. Its own segment's error is within INT8's budget (the big channel dominates it), so the ladder runs on the
    segment from the conv on to the first divergent probe (cures/int8_story_cure.py): the tensor quantized at the other
    channels' range passes that segment — and was offered, with ONNX Runtime's override that sets it. Judged at the
    outputs too (issue 115, item 1: cures/at_outputs.py) it raises the model's output error (5.5× → 5.9× INT8's
    budget on AVX2): tried, said, not offered."""
    proc = cpdebug("bisect", "--torch", f"{MODELS}:issue_84", "-b", "torch,ort-cpu-int8", "--level", "all",
                   "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-int8"]
    hint = cause["hint"]
    assert cause["probe"] == CONV, cause
    assert hint.startswith(f"INT8 resolution lost after {CONV}: its output"), hint
    assert f"the cure ladder on the segment from {CONV} on to " in hint, hint
    rung = re.search(r"\(the largest \|x\| of the other channels: the outlier channel saturates; calibrated at "
                     r"±[\d.e+-]+\): within precision on its segment but leaves the outputs worse \(worst output "
                     r"([\d.e+-]+)× → ([\d.e+-]+)× its budget", hint)
    assert rung is not None, hint
    before, after = map(float, rung.groups())
    assert after > before, hint
    assert "'TensorQuantOverrides'" not in hint and "exclude this layer from INT8" not in hint, hint


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_one_planted_fault_has_one_verdict_at_every_level(tmp_path):
    """Issue 108, item 1: the depthwise plant of `depthwise_deep`, calibrated on held-out samples, exited 1
    ("diverged": features.17's block, its layers run whole, 4.7× INT8's budget, three times its siblings') at the
    default level and 4 at `--level all` (its layers measured, none beyond). A segment's own error is now weighed
    against the run's own errors, and one holding measured layers is a fault only FAR beyond: one outcome, one exit."""
    calib = tmp_path / "calib.npz"
    import numpy as np

    np.savez(calib, input0=np.random.default_rng(2).standard_normal((8, 1, 3, 96, 96)).astype(np.float32))
    seen = {}
    for level in ("block", "all"):
        out = tmp_path / f"{level}.json"
        proc = cpdebug("bisect", "--torch", f"{MODELS}:depthwise_deep", "-b", "torch,ort-cpu-int8", "--level", level,
                       "--calib", calib, "--json", out, "--quiet")
        report = json.loads(out.read_text())
        seen[level] = (proc.returncode, report["outcomes"]["ort-cpu-int8"])
        assert proc.returncode in (1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    assert seen["block"] == seen["all"], seen

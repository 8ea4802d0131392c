"""`cpdebug fix`'s two failures are two exit codes, on planted FP16 overflows of the tiny model (the CLI, run in
process): no set meets the target, nothing written -> 1 (`ExitCode.DIVERGED`); a set written whose verification fails
-> 5 (`ExitCode.NOT_VERIFIED`), and `fix --check` of it -> 5 too."""

from __future__ import annotations

import json

import pytest

from cp_debug.errors import ExitCode
from tests.fix.cli import cpdebug
from tests.fix.planted import LOCAL_OVERFLOW_NODES, local_overflow_checkpoint

pytestmark = pytest.mark.slow


def test_no_set_found_is_exit_1_and_writes_nothing(tmp_path):
    """Only the shared conv may be kept in FP32: the deblock's overflow stays, even with it kept."""
    ckpt = local_overflow_checkpoint(tmp_path / "planted.pth")
    out = tmp_path / "fix"
    proc = cpdebug("--preset", "tiny", "--checkpoint", ckpt, "--backends", "torch,ort-cpu-fp16",
                   "--max-rel-rmse", "0.05", "--n", 1, "--bootstrap", 0, "--search-nodes", LOCAL_OVERFLOW_NODES[-1],
                   "--out", out,
                   "--json", tmp_path / "run.json", "--quiet")
    assert proc.returncode == ExitCode.DIVERGED == 1, proc.stdout + proc.stderr
    assert "No set meets" in proc.stdout and "Nothing was written" in proc.stdout
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".fix")]
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["status"] == "impossible" and doc["out"] is None and doc["verification"] is None


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_written_but_not_verified_is_exit_5_and_check_agrees(tmp_path):
    """The deblock's output peaks at 52000 on the search's frame (held-out scene 5): FP16 holds it, so the plain
    FP16 pair meets the target there and is written; on the verification's frame (scene 6) it peaks 1.42x higher
    (73600, past 65504) and overflows, so the written pair does not hold. (The deblock's peak on held-out scenes
    0-7 of the tiny model's random weights (40 x 40 grid), over scene 5's: 0.91, 1.39, 1.27, 1.11, 1.22, 1, 1.42,
    1.31; the planted factor scales every scene alike.)"""
    ckpt = local_overflow_checkpoint(tmp_path / "planted.pth", peak=5.2e4, scene=5)
    out = tmp_path / "fix"
    proc = cpdebug("--preset", "tiny", "--checkpoint", ckpt, "--backends", "torch,ort-cpu-fp16",
                   "--max-rel-rmse", "0.05", "--first-scene", 5, "--n", 1, "--verify-n", 1, "--bootstrap", 0,
                   "--out", out,
                   "--json", tmp_path / "run.json", "--quiet")
    assert proc.returncode == ExitCode.NOT_VERIFIED == 5, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["status"] == "not_needed" and doc["out"] == str(out)
    assert not doc["verification"]["holds"] and doc["verification"]["frames"]["first"] == 6
    assert (out / "fix.json").is_file() and (out / "pts_backbone_neck_head.onnx").is_file()
    assert "not verified" in proc.stdout
    proc = cpdebug("--check", out, "--quiet")
    assert proc.returncode == ExitCode.NOT_VERIFIED, proc.stdout + proc.stderr
    assert "does NOT hold" in proc.stdout

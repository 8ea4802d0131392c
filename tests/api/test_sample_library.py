"""`cp_debug.sweep`, `cp_debug.eval` and `cp_debug.fix` on a list of samples: the command's request and runs
(`api/samples_request.py`, `api/fix_library.graph_fix`), so their reports are the command's for the same run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.api import nets
from tests.api.test_library import NETS
from tests.cli_run import cpdebug


def _samples(n: int = 3) -> list[tuple[np.ndarray]]:
    rng = np.random.default_rng(1)
    return [(rng.standard_normal((1, 3, 16, 16)).astype(np.float32),) for _ in range(n)]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # two sweeps of 3 samples, each bisecting its worst
def test_the_library_sweep_is_the_commands_sweep_json(tmp_path):
    import cp_debug

    samples = _samples()
    (tmp_path / "in").mkdir()
    for i, (x,) in enumerate(samples):
        np.savez(tmp_path / "in" / f"sample_{i}.npz", x=x)
    proc = cpdebug("sweep", "--torch", f"{NETS}:planted", "--inputs", tmp_path / "in", "-b", "torch,ort-cpu-fp16",
                   "--bisect-top", "1", "--out", tmp_path / "cli", "-q")
    assert proc.returncode == 1, proc.stderr[-2000:]
    cli = json.loads((tmp_path / "cli" / "sweep.json").read_text())
    report = cp_debug.sweep(nets.net(planted=True), samples, "torch,ort-cpu-fp16", bisect_top=1, out=tmp_path / "api")
    api = json.loads((tmp_path / "api" / "sweep.json").read_text())
    assert api == report.to_json() and report.exit_code == 1 and report.outcome.value == cli["outcome"]
    for key in ("reference", "candidates", "outcome", "verdict", "summary", "root_cause_counts", "by_shape"):
        assert api[key] == cli[key], key
    keys = ("rank", "token", "status", "outcome", "worst_probe", "root_cause", "bisected")
    assert [{k: f[k] for k in keys} for f in api["frames"]] == [{k: f[k] for k in keys} for f in cli["frames"]]
    assert report.worst is not None and report.worst.root_cause.probe == "c1"
    assert list(report.frame()["token"]) == [f["token"] for f in cli["frames"]]
    assert "root cause: c1" in report.summary()


def test_the_library_eval_and_fix_are_the_commands(tmp_path):
    import cp_debug

    samples = _samples(4)
    (tmp_path / "in").mkdir()
    for i, (x,) in enumerate(samples):
        np.savez(tmp_path / "in" / f"sample_{i}.npz", x=x)
    proc = cpdebug("eval", "--torch", f"{NETS}:healthy", "--inputs", tmp_path / "in", "-b", "torch,ort-cpu-fp16",
                   "--metric", "argmax", "--bootstrap", "20", "--json", "-", "-q")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cli = json.loads(proc.stdout)
    report = cp_debug.eval(nets.net(), samples, "torch,ort-cpu-fp16", metric="argmax", bootstrap=20)
    api = report.to_json()
    assert report.exit_code == 0 and api["outcome"] == cli["outcome"] == "within_precision"
    for key in ("reference", "backends", "metric", "samples", "metrics", "verdicts"):
        assert api[key] == cli[key], key
    assert list(report.frame()["backend"]) == ["torch", "ort-cpu-fp16"]

    proc = cpdebug("fix", "--torch", f"{NETS}:planted", "--inputs", tmp_path / "in", "-b", "ort-cpu-fp16",
                   "--out", tmp_path / "cli_fix", "--json", "-", "-q")
    assert proc.returncode == 0, proc.stderr[-2000:]
    cli = json.loads(proc.stdout)
    fixed = cp_debug.fix(nets.net(planted=True), samples, "ort-cpu-fp16", out=tmp_path / "api_fix")
    assert fixed.exit_code == 0 and fixed.nodes == cli["set"]["keep_fp32"] == ["node_conv2d", "node_relu",
                                                                              "node_conv2d_1"]
    assert fixed.to_json()["set"] == cli["set"] and fixed.to_json()["outcome"] == cli["outcome"]
    assert (tmp_path / "api_fix" / "fix.json").is_file() and (tmp_path / "api_fix" / "model_fp16.onnx").is_file()
    assert list(fixed.frame()["name"]) == fixed.nodes


def test_the_library_takes_calib_as_the_command_does_one_path_or_several(tmp_path):
    import cp_debug

    samples = _samples(3)
    (tmp_path / "in").mkdir()
    for i, (x,) in enumerate(samples):
        np.savez(tmp_path / "in" / f"sample_{i}.npz", x=x)
    rng = np.random.default_rng(7)
    calib = []
    for i in range(2):
        calib.append(tmp_path / f"calib_{i}.npz")
        np.savez(calib[-1], x=rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    proc = cpdebug("eval", "--torch", f"{NETS}:healthy", "--inputs", tmp_path / "in", "-b", "torch,ort-cpu-int8",
                   "--metric", "argmax", "--bootstrap", "20", "--calib", calib[0], "--calib", calib[1], "--json", "-",
                   "-q")
    assert proc.returncode in (0, 1, 4), proc.stderr[-2000:]
    cli = json.loads(proc.stdout)
    report = cp_debug.eval(nets.net(), samples, "torch,ort-cpu-int8", metric="argmax", bootstrap=20,
                           calib=[str(c) for c in calib])
    api = report.to_json()
    assert report.exit_code == proc.returncode and api["outcome"] == cli["outcome"]
    for key in ("reference", "backends", "metric", "samples", "metrics"):
        assert api[key] == cli[key], key
    with pytest.raises(cp_debug.CpDebugError, match="--calib .*missing.npz: not found"):
        cp_debug.eval(nets.net(), samples, "torch,ort-cpu-int8", metric="argmax", bootstrap=20,
                      calib=[calib[0], tmp_path / "missing.npz"])

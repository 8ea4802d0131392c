"""Short CPU training runs: the loss falls; the CLI writes a float16 checkpoint that re-loads strictly, and a log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cp_debug.cli.main import app
from cp_debug.models.centerpoint.checkpoint import load_checkpoint
from cp_debug.pickles import read_checkpoint
from cp_debug.recipes.catalog import detector
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.models.centerpoint.model import build_model
from cp_debug.train.batches import SceneDataset
from cp_debug.train.loop import TrainOptions
from cp_debug.train.loop import train as train_loop

# tiny's modules and range (+-12.8 m) on 0.32 m pillars (80 x 80)
SMALL = get_preset("tiny").with_(name="tiny", point_cloud_range=(-12.8, -12.8, -3.0, 12.8, 12.8, 5.0),
                                 voxel_size=(0.32, 0.32, 8.0), max_voxels=6000)


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_short_training_lowers_the_loss():
    data = SceneDataset(SMALL, seeds=[1, 2, 3, 4])
    result = train_loop(SMALL, data, TrainOptions(steps=6, batch_size=1, lr=1e-3, log_every=1), detector=detector())
    losses = [row.loss for row in result.log]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2])
    assert not result.model.training


def test_cli_trains_and_writes_a_float16_checkpoint_that_loads(tmp_path):
    res = _run("scenes", "--preset", "tiny", "--n", "2", "--out", tmp_path / "scenes", "-q")
    assert res.exit_code == 0, res.output
    ckpt, log = tmp_path / "ck.pth", tmp_path / "log.json"
    res = _run("train", "--preset", "tiny", "--scenes", tmp_path / "scenes", "--steps", "1", "--batch-size", "1",
               "--val-n", "1", "--half", "--out", ckpt, "--log", log, "-q")
    assert res.exit_code == 0, res.output
    data = json.loads(log.read_text())
    assert data["steps"] == 1 and np.isfinite(data["loss_curve"][0]["loss"])
    assert data["final"]["num_samples"] == 1 and 0.0 <= data["final"]["mAP"] <= 1.0

    raw = read_checkpoint(ckpt)
    assert raw["meta"]["preset"] == "tiny" and raw["meta"]["stored_dtype"] == "float16"
    assert raw["state_dict"]["pts_backbone.blocks.0.0.weight"].dtype == torch.float16
    model = build_model(get_preset("tiny"), seed=0, init="mmdet3d")
    load_checkpoint(model, ckpt)
    w = model.pts_backbone.blocks[0][0].weight
    assert w.dtype == torch.float32
    assert torch.equal(w, raw["state_dict"]["pts_backbone.blocks.0.0.weight"].float())


def test_train_refuses_bad_input(tmp_path):
    res = CliRunner().invoke(app, ["train", "--preset", "tiny", "--out", str(tmp_path / "x.pth")])
    assert res.exit_code == 2 and "--scenes" in res.output
    res = CliRunner().invoke(app, ["train", "--preset", "tiny", "--n", "2", "--out", str(tmp_path / "x.ckpt")])
    assert res.exit_code == 2 and ".pth" in res.output


# A real third-party warning: torch's DataLoader warns (UserWarning) when --workers exceeds the CPUs the process
# may use; the subprocess is pinned to one CPU and asks for two workers.
DATALOADER_WARNING = "This DataLoader will create 2 worker processes in total"


@pytest.fixture(scope="module")
def one_scene(tmp_path_factory) -> Path:
    from cp_debug.data.scene_set import write_scene_set

    d = tmp_path_factory.mktemp("scenes")
    write_scene_set(get_preset("tiny"), d, [0])
    return d


def _train_on_one_cpu(scene_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "train", "--preset", "tiny", "--scenes",
                           str(scene_dir), "--steps", "1", "--batch-size", "1", "--val-n", "0", "--workers", "2",
                           "--out", str(out), *extra], capture_output=True, text=True, timeout=300, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root), "COLUMNS": "200"},
                          preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_train_keeps_torchs_warning_off_the_terminal_and_in_the_log(one_scene, tmp_path):
    log = tmp_path / "log.json"
    r = _train_on_one_cpu(one_scene, tmp_path / "ck.pth", "--log", str(log))
    assert r.returncode == 0, r.stderr
    assert DATALOADER_WARNING not in r.stderr + r.stdout and "UserWarning" not in r.stderr + r.stdout
    assert "train tiny" in r.stderr  # our own progress still reaches the terminal
    caught = json.loads(log.read_text())["third_party_warnings"]
    ours = [w for w in caught if w["source"] == "python warning" and DATALOADER_WARNING in w["message"]]
    assert ours and all(w["count"] >= 1 for w in ours)
    total = sum(w["count"] for w in caught)
    assert f"{total} third-party warning" in r.stdout.splitlines()[-1]
    assert "in the log's third_party_warnings (-v shows them as they come)" in r.stdout.splitlines()[-1]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_train_verbose_shows_torchs_warning(one_scene, tmp_path):
    r = _train_on_one_cpu(one_scene, tmp_path / "ck.pth", "-v", "-q")
    assert r.returncode == 0, r.stderr
    assert DATALOADER_WARNING in r.stderr and "UserWarning" in r.stderr
    assert DATALOADER_WARNING not in r.stdout

"""`cpdebug sweep` end to end (the CLI, run in process): an info file's frames, the worst frame bisected, the
files, exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli_run import cpdebug as run_cli

pytestmark = [pytest.mark.slow, pytest.mark.needs("nuscenes-devkit")]

ROOT = Path(__file__).resolve().parents[2]


def cpdebug(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=ROOT)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_sweep_cli_bisects_the_worst_frame_and_resumes(tmp_path, monkeypatch):
    from cp_debug.data.scene_set import write_scene_set
    from cp_debug.data.scenes import heldout_seeds
    from cp_debug.models.centerpoint.presets import get_preset

    write_scene_set(get_preset("tiny"), tmp_path / "scenes", heldout_seeds(2))
    out = tmp_path / "out"
    args = ["sweep", "--out", str(out), "--scenes", str(tmp_path / "scenes"), "--backends", "torch,ort-cpu-fp16",
            "--preset", "tiny", "--level", "stage", "--bootstrap", "20", "-q", "--tolerance-mode", "fixed"]
    run = cpdebug(*args, "--bisect-top", "1")
    assert run.returncode == 1, run.stderr  # FP16 is beyond the element-wise tolerance on every frame
    doc = json.loads((out / "sweep.json").read_text())
    top = doc["frames"][0]
    assert top["root_cause"] and (out / "bisect" / f"{top['token']}.json").is_file()
    frame_report = json.loads((out / "bisect" / f"{top['token']}.json").read_text())
    model = frame_report["model"]
    assert model["points"] == f"sweep frame {top['token']}" and model["points_file"] is None  # no temporary file
    assert model["point_cloud"]["format"] == "array" and model["point_cloud"]["points_read"] > 0
    assert doc["root_cause_counts"]["bisected"] == 1 and doc["root_cause_counts"]["counts"] == {top["root_cause"]: 1}
    assert "root_cause" not in doc["frames"][1]
    assert set(doc["metrics"]["devkit"]) == {"torch", "ort-cpu-fp16"}
    assert doc["verdict"] in run.stdout
    assert doc["runs_on"] == {"given": True, "text": "--preset tiny"}  # the model named: recorded, nothing said
    assert frame_report["runs_on"] == doc["runs_on"]  # the frame's bisect says it as `cpdebug bisect` would

    again = cpdebug(*args)
    assert again.returncode == 2 and "--resume" in again.stderr and again.stderr.count("\n") == 1
    resumed = cpdebug(*args, "--resume", "--bisect-top", "0", "--no-html")  # the first run drew the HTML
    assert resumed.returncode == 1, resumed.stderr
    again_doc = json.loads((out / "sweep.json").read_text())
    assert [f["token"] for f in again_doc["frames"]] == [f["token"] for f in doc["frames"]]
    # every frame was in its shard: nothing built to run frames, the same metrics and model record
    assert again_doc["settings"]["executor"]["kind"].startswith("none") and doc["settings"]["executor"]["kind"] == \
        "in-process"
    assert again_doc["metrics"] == doc["metrics"] and again_doc["model"] == doc["model"]
    assert "no mAP/NDS" not in resumed.stdout + resumed.stderr

    # where nuscenes-devkit cannot be imported, the sweep says so in one line and sweep.json holds why, per lane
    import sys

    monkeypatch.setitem(sys.modules, "nuscenes.eval.detection.algo", None)  # as a host without it: not importable
    blind = cpdebug(*args, "--resume", "--bisect-top", "0", "--no-html")
    assert blind.returncode == 1, blind.stderr
    said = [line for line in (blind.stdout + blind.stderr).splitlines() if "no mAP/NDS" in line]
    assert len(said) == 1 and "torch, ort-cpu-fp16" in said[0] and "nuscenes-devkit is not installed" in said[0]
    blind_doc = json.loads((out / "sweep.json").read_text())
    assert "not installed" in blind_doc["metrics"]["devkit"]["torch"]["error"]
    assert blind_doc["metrics"]["ap_change"] == doc["metrics"]["ap_change"]  # the bootstrap needs no devkit


def test_a_degraded_frame_is_degraded_in_every_file_and_exits_4(tmp_path):
    """One vocabulary (issue 46): the tiny preset's INT8 lies beyond its noise evenly (no layer stands out), so its
    frame is degraded — and says so in sweep.json, frames.parquet, the terminal's table and the JUnit file, and exits
    4. Before, sweep.json and frames.parquet said "diverged" for it."""
    import xml.etree.ElementTree as ET

    import pandas as pd

    out, junit = tmp_path / "out", tmp_path / "sweep.xml"
    run = cpdebug("sweep", "--out", out, "--n", "1", "--backends", "torch,ort-cpu-int8", "--preset", "tiny", "--level",
                  "stage", "--calib-n", "1", "--bootstrap", "10", "--bisect-top", "0", "--junit", junit)
    assert run.returncode == 4, run.stderr[-2000:]
    doc = json.loads((out / "sweep.json").read_text())
    frame = doc["frames"][0]
    assert (frame["status"], frame["outcome"], doc["outcome"]) == ("degraded",) * 3
    assert {k: doc["summary"][k] for k in ("ok", "degraded", "diverged", "failed")} == \
        {"ok": 0, "degraded": 1, "diverged": 0, "failed": 0}
    assert set(pd.read_parquet(out / "frames.parquet")["status"]) == {"degraded"}
    row = next(line for line in run.stdout.splitlines() if frame["token"] in line)
    assert "degraded" in row and "diverged" not in row
    assert doc["verdict"].startswith("degraded: ")
    case = next(c for c in ET.parse(junit).iter("testcase") if c.get("name") == frame["token"])
    assert case.find("failure").get("type") == "cpdebug.degraded"
    assert case.find("failure").get("message").startswith(f"{frame['token']}: degraded")

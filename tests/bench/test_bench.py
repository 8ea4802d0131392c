"""`cpdebug bench` prints and writes one row per backend and stage (median, p90)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ["voxelize", "input_features", "voxel_encoder", "scatter", "backbone_neck_head", "decode_nms", "total"]


def test_bench_rows_for_each_stage_and_backend(tmp_path):
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # the repo first
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bench", "--preset", "tiny", "--backends",
                        "torch,ort", "--repeat", "2", "--warmup", "0", "--json", str(tmp_path / "b.json"),
                        "--csv", str(tmp_path / "b.csv"), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # --quiet: nothing of ours, and third-party text (ORT's C++ log, warnings) is caught
    assert json.loads((tmp_path / "b.json").read_text())["third_party_warnings"] == []
    for stage in STAGES:
        assert stage in r.stdout
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(x["backend"], x["stage"]) for x in rows] == [(b, s) for b in ("torch", "ort") for s in STAGES]
    for x in rows:
        assert 0 < x["median_ms"] <= x["p90_ms"] and x["repeats"] == 2
    by = {(x["backend"], x["stage"]): x for x in rows}
    for b in ("torch", "ort"):  # the stages add up to the total run by run, so their medians come close
        parts = sum(by[b, s]["min_ms"] for s in STAGES[:-1])
        assert parts <= by[b, "total"]["min_ms"] * 1.0001 + 1e-6
    with open(tmp_path / "b.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and {"median_ms", "p90_ms", "backend", "stage"} <= set(table[0])

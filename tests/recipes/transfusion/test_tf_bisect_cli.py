"""`cpdebug bisect --recipe transfusion` through the command line: the recipe's model, probes and decision in the
JSON report; CenterPoint's options refused."""

from __future__ import annotations

import json

import numpy as np

from tests.cli_run import cpdebug


def test_cli_bisect_names_the_decision(tmp_path):
    from cp_debug.models.centerpoint.synthetic import synthetic_scene
    from cp_debug.models.transfusion.presets import get_preset

    points = tmp_path / "scan.bin"
    synthetic_scene(3, get_preset("transfusion-tiny")).points[:600].astype(np.float32).tofile(points)
    res = cpdebug("bisect", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights",
                  "--backends", "torch,torch", "--points", points, "--no-noise-floor", "--no-local", "--json", "-")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["model"]["recipe"] == "transfusion" and doc["model"]["preset"] == "transfusion-tiny"
    assert doc["decisions"]["torch"][0]["name"] == "proposal selection (top-K)"
    assert any(p["name"] == "pts_bbox_head.decoder.0.cross_attn" for p in doc["probes"])
    res = cpdebug("bisect", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--int8", tmp_path)
    assert res.returncode == 2 and "not for --recipe transfusion" in res.stderr

"""`cpdebug bisect --recipe transfusion` through the command line: the recipe's model, probes and decision in the
JSON report; CenterPoint's options refused."""

from __future__ import annotations

import pytest

import json

import numpy as np

from tests.cli_run import cpdebug


def test_cli_bisect_names_the_decision(tmp_path):
    from cp_debug.lidar.synthetic import synthetic_scene
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


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_params_give_the_verdict_the_node_s_post_process_and_lint_their_agreement_with_the_model(tmp_path):
    """`--params`: the node's transfusion.param.yaml sets the boxes' score threshold, NMS and yaw filters (recorded as
    `model.post_process`); its ml_package file, made for another grid, is linted against the model first — each
    mismatch a warning of the report (there is no deployed graph to compare), the model's own grid and proposals
    kept for the decode."""
    import shutil
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "data" / "autoware"
    node = tmp_path / "transfusion.param.yaml"
    node.write_text((data / "transfusion.param.yaml").read_text().replace("score_threshold: 0.1",
                                                                         "score_threshold: 0.35"))
    shutil.copy(data / "transfusion_ml_package.param.yaml", tmp_path)
    out = tmp_path / "r.json"
    res = cpdebug("bisect", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights",
                  "--backends", "torch,torch", "--no-noise-floor", "--no-local", "--params", node, "--params",
                  tmp_path / "transfusion_ml_package.param.yaml", "--json", out)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    post = doc["model"]["post_process"]
    assert post["score_threshold"] == 0.35 and post["yaw_norm_thresholds"] == [0.3, 0.3, 0.3, 0.3, 0.0]
    assert post["files"] == [str(node), str(tmp_path / "transfusion_ml_package.param.yaml")]
    assert doc["detections"]["torch"]["score_cuts"] == [0.35]
    lint = [w for w in doc["warnings"] if w.startswith("lint mismatch: ")]
    assert {w.split(":")[1].strip() for w in lint} == {"point_cloud_range", "voxel_size", "grid", "num_proposals"}

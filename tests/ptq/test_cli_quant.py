"""`cpdebug quantize` and `cpdebug sensitivity` end to end on the tiny preset, and their bad-input lines."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cp_debug.cli.main import app

runner = CliRunner()


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_quantize_writes_a_ptq_dir_that_loads(tmp_path, tiny_cfg):
    out = tmp_path / "ptq"
    res = runner.invoke(app, ["quantize", "--preset", "tiny", "--calib-n", "1", "--method", "percentile",
                              "--eval-n", "1", "--out", str(out), "--json", "-"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert res.stderr == "" and summary["third_party_warnings"] == []  # ORT/torch text caught, none left
    assert summary["method"] == "percentile" and len(summary["layers"]) == 29
    assert summary["onnx"]["backbone"]["quantized_convs"] == 29
    assert {r["tensor"] for r in summary["sqnr"]["rows"]} == {"weight", "input"}
    assert all(r["sqnr_db"] > 10 for r in summary["sqnr"]["rows"])

    from cp_debug.errors import CheckpointError
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.recipes.centerpoint.ptq_checkpoint import fakequant_model_from_dir

    ptq, model = fakequant_model_from_dir(out, tiny_cfg)
    assert ptq.preset == "tiny" and len(ptq.graphs) == 2 and all(g.is_file() for g in ptq.graphs)
    assert model.pts_backbone.blocks[0][0]._input_quantizer.amax is not None
    with pytest.raises(CheckpointError, match="--preset tiny"):
        fakequant_model_from_dir(out, get_preset("demo"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("args,needle", [
    (["--exclude-int8", "pts_backbone.nope"], "pts_backbone.nope"),
    (["--method", "kl"], "--method"),
    (["--calib-n", "0"], "--calib-n"),
    (["--convtranspose", "sideways"], "--convtranspose"),
])
def test_quantize_bad_input_is_one_line(tmp_path, args, needle):
    res = runner.invoke(app, ["quantize", "--preset", "tiny", "--out", str(tmp_path / "o"), "-q", *args])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], res.output
    assert not (tmp_path / "o").exists()


def test_sensitivity_ranks_chosen_layers_and_writes_csv(tmp_path):
    layers = "pts_backbone.blocks.2.3,pts_bbox_head.task_heads.0.heatmap.1,pts_bbox_head.shared_conv.conv"
    csv = tmp_path / "s.csv"
    res = runner.invoke(app, ["sensitivity", "--preset", "tiny", "--calib-n", "1", "--method", "max",
                              "--eval-n", "1", "--layers", layers, "--csv", str(csv), "--json", "-"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert res.stderr == "" and data["third_party_warnings"] == []
    rows = data["sensitivity"]["rows"]
    assert {r["layer"] for r in rows} == set(layers.split(","))
    assert [r["rel_rmse"] for r in rows] == sorted((r["rel_rmse"] for r in rows), reverse=True)
    assert csv.read_text().splitlines()[0].startswith("rank,layer,rel_rmse")


def test_sensitivity_refuses_a_negative_map_drop():
    res = runner.invoke(app, ["sensitivity", "--preset", "tiny", "--search", "--max-map-drop", "-0.1", "-q"])
    assert res.exit_code == 2 and "--max-map-drop" in res.output


def test_calibration_scenes_come_from_an_info_file(tmp_path, tiny_cfg):
    """--calib reads mmdet3d v1.x infos (cp_debug.data.infos) and their point files."""
    scene_set = pytest.importorskip("cp_debug.data.scene_set")
    from cp_debug.data.frames import calibration, points_of
    from cp_debug.recipes.centerpoint.ptq.quantize import calibration_text

    info = scene_set.write_scene_set(tiny_cfg, tmp_path / "set", [5, 6])
    frames = calibration(tiny_cfg, None, infos=info.parent)
    n, desc = len(frames), calibration_text(len(frames), info.parent)
    got = list(points_of(frames, tiny_cfg))
    assert n == 2 and len(got) == 2 and str(info.parent) in desc
    want = list(points_of(calibration(tiny_cfg, 7)[5:], tiny_cfg))  # training seeds 5 and 6
    for g, w in zip(got, want):  # the same scans, read back from .bin files (model columns x, y, z, t)
        assert g.shape[0] > 0 and g.shape[1] == tiny_cfg.in_channels
        assert abs(g.shape[0] - w.shape[0]) <= w.shape[0] // 10

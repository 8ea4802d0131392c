"""`cpdebug lint --recipe transfusion`: Autoware's TransFusion parameter files (tests/data/autoware: copies of
autoware.universe's, unchanged), an AWML T4 config and a transfusion.onnx cp_debug exported: consistent where they
agree (the T4 90m-768 config with the files' 200 proposals, a tiny graph of 200 proposals: the ONNX holds no range
or voxel size); each planted mismatch named in one line with the pair that disagrees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cp_debug.errors import BadInputError
from cp_debug.lint.run import LintRequest
from cp_debug.recipes.transfusion.lint import lint
from cp_debug.models.transfusion.presets import configs_dir, get_preset

from tests.cli_run import cpdebug

DATA = Path(__file__).resolve().parents[1] / "data" / "autoware"
NODE = DATA / "transfusion.param.yaml"
ML = DATA / "transfusion_ml_package.param.yaml"
T4 = "transfusion-t4-90m-768"


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory) -> Path:
    """A tiny TransFusion with the files' 200 proposals, exported once (its 5 classes, 20 points per voxel and 5
    point features are the node's)."""
    from cp_debug.models.transfusion.model import build_model
    from cp_debug.recipes.transfusion.export import export_transfusion

    cfg = get_preset("transfusion-tiny").with_(num_proposals=200)
    out = tmp_path_factory.mktemp("tf-lint")
    export_transfusion(build_model(cfg, 0), cfg, out, max_voxels=300)
    return out


def _ml(tmp_path: Path, **changes) -> Path:
    """Autoware's transfusion_ml_package.param.yaml with `changes` to its parameters."""
    doc = yaml.safe_load(ML.read_text())
    doc["/**"]["ros__parameters"].update(changes)
    path = tmp_path / "transfusion_ml_package.param.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _lint(onnx_dir, params=(NODE, ML), cfg=None):
    cfg = cfg if cfg is not None else get_preset(T4).with_(num_proposals=200)
    return lint(LintRequest(cfg, "t4.py", tuple(params), onnx_dir))


def _by_check(report):
    return {f.check: f for f in report.findings}


def test_the_real_files_a_matching_config_and_graph_are_consistent(onnx_dir):
    report = _lint(onnx_dir)
    assert report.consistent and int(report.exit_code) == 0, [f.line() for f in report.mismatches]
    found = _by_check(report)
    for check in ("interface", "class_names", "num_classes", "point_cloud_range", "voxel_size", "grid",
                  "points_per_voxel", "point_features", "num_proposals", "box_values", "dir_values", "voxels_num",
                  "max_voxels", "yaw_norm_thresholds"):
        assert found[check].status == "ok", found[check].line()
    assert not report.warnings
    assert "transfusion.onnx:cls_score0[2]" in found["num_proposals"].message
    assert "dynamic voxel axis voxels_num" in found["voxels_num"].message


def test_the_t4_config_says_500_proposals_where_graph_and_node_say_200(onnx_dir):
    report = _lint(onnx_dir, cfg=get_preset(T4))
    assert [f.check for f in report.mismatches] == ["num_proposals"]
    (f,) = report.mismatches
    assert f.message.startswith("number of proposals: 200 (transfusion.onnx:cls_score0[2]) ≠ 500 "
                                "(t4.py:model.pts_bbox_head.num_proposals)")
    assert "set it to 200 or re-export" in f.message and f.breaks_comparison


def test_node_proposals_off_the_graph(onnx_dir, tmp_path):
    report = _lint(onnx_dir, params=(NODE, _ml(tmp_path, num_proposals=500)))
    (f,) = report.mismatches
    assert "200 (transfusion.onnx:cls_score0[2]) ≠ 500 (transfusion_ml_package.param.yaml:num_proposals)" in f.message
    assert "refuses to start" in f.message and not f.breaks_comparison


def test_wrong_class_count(onnx_dir, tmp_path):
    report = _lint(onnx_dir, params=(NODE, _ml(tmp_path, class_names=["CAR", "TRUCK", "BUS", "PEDESTRIAN"])))
    found = _by_check(report)
    assert {"class_names", "num_classes", "yaw_norm_thresholds"} <= {f.check for f in report.mismatches}
    assert "5 (transfusion.onnx:cls_score0[1]) ≠ 4 (transfusion_ml_package.param.yaml:class_names (count))" in \
        found["num_classes"].message
    assert "5 values (transfusion.param.yaml:yaw_norm_thresholds) for 4 classes" in \
        found["yaw_norm_thresholds"].message


def test_wrong_range(onnx_dir, tmp_path):
    report = _lint(onnx_dir, params=(NODE, _ml(tmp_path, point_cloud_range=[-76.8, -76.8, -3.0, 76.8, 76.8, 7.0])))
    found = _by_check(report)
    assert {f.check for f in report.mismatches} == {"point_cloud_range", "grid"}
    assert "[-92.16, -92.16, -3, 92.16, 92.16, 7] (t4.py:model.data_preprocessor.voxel_layer.point_cloud_range) ≠ " \
        "[-76.8, -76.8, -3, 76.8, 76.8, 7] (transfusion_ml_package.param.yaml:point_cloud_range)" in \
        found["point_cloud_range"].message


@pytest.mark.parametrize("voxels_num, says", [
    ([30000, 5000, 60000], "is not 0 < min ≤ opt ≤ max"),
    ([5000, 60000], "the node ignores it and keeps [5000, 30000, 60000]"),
])
def test_voxels_num(onnx_dir, tmp_path, voxels_num, says):
    report = _lint(onnx_dir, params=(NODE, _ml(tmp_path, voxels_num=voxels_num)))
    assert says in _by_check(report)["voxels_num"].message and not report.consistent


def test_voxel_cap_below_the_config_is_a_warning(onnx_dir, tmp_path):
    report = _lint(onnx_dir, params=(NODE, _ml(tmp_path, voxels_num=[5000, 30000, 40000])))
    assert report.consistent
    assert "60000 (t4.py:model.data_preprocessor.voxel_layer.max_voxels) ≠ 40000 " \
        "(transfusion_ml_package.param.yaml:voxels_num[2])" in _by_check(report)["max_voxels"].message


def test_centerpoint_files_are_refused():
    with pytest.raises(BadInputError, match="none of the parameters Autoware's TransFusion node reads"):
        _lint(None, params=(DATA / "centerpoint_ml_package.param.yaml",))


def test_cli_with_an_awml_config_and_a_deployed_folder(onnx_dir, tmp_path):
    config = tmp_path / "t4_200.py"
    config.write_text(f"_base_ = [{str(configs_dir() / f'{T4}.py')!r}]\n"
                      "model = dict(pts_bbox_head=dict(num_proposals=200))\n")
    folder = tmp_path / "deployed"
    shutil.copytree(onnx_dir, folder)
    for f in (NODE, ML):
        shutil.copy(f, folder)
    res = cpdebug("lint", "--recipe", "transfusion", "--config", config, "--onnx-dir", folder, "--json",
                  tmp_path / "r.json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "lint: consistent: 15 checks agree" in res.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["inputs"]["params"] == [str(folder / NODE.name), str(folder / ML.name)]


def test_cli_names_the_mismatch_and_exits_1(onnx_dir):
    res = cpdebug("lint", "--recipe", "transfusion", "--preset", T4, "--params", NODE, "--params", ML,
                  "--onnx-dir", onnx_dir / "transfusion.onnx")
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("mismatch")]
    assert len(lines) == 1 and "200 (transfusion.onnx:cls_score0[2]) ≠ 500 (preset transfusion-t4-90m-768:" \
        "model.pts_bbox_head.num_proposals)" in lines[0]
    assert "lint: 1 mismatch of 15 checks" in res.stdout

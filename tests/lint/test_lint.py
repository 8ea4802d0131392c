"""`cpdebug lint` on Autoware's parameter files in their real layouts (tests/data/autoware: copies of
autoware_universe's files), the tiny preset's AWML config file and a pair cp_debug exported from it: consistent as
they are; each planted mismatch named with both values and where each came from; a pair exported from other
weights named before anything runs; an Autoware model folder read as SPEC@DIR."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import yaml

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.subjects.deployed import deployed_stages
from cp_debug.data.autoware_params import read_params
from cp_debug.recipes.centerpoint.autoware_node import AUTOWARE_NODE
from cp_debug.data.model_folder import stage_file
from cp_debug.errors import BadInputError
from cp_debug.lint.run import LintRequest
from cp_debug.recipes.centerpoint.lint import lint
from cp_debug.models.centerpoint.presets import get_preset, preset_config_path
from cp_debug.recipes.centerpoint.subject import centerpoint_subject
from cp_debug.recipes.centerpoint.sweep.lanes import save_stages

from tests.bisect.deployed_files import edited

DATA = Path(__file__).resolve().parents[1] / "data" / "autoware"
ROOT = Path(__file__).resolve().parents[2]
# the tiny preset's values (+-12.8 m, 40 x 40 pillars of 0.64 m), written into Autoware's files in place of their
# model's
TINY = {"class_names": ["CAR", "TRUCK", "BUS", "BICYCLE", "PEDESTRIAN"], "point_feature_size": 4,
        "max_voxel_size": 12000, "point_cloud_range": [-12.8, -12.8, -3.0, 12.8, 12.8, 5.0],
        "voxel_size": [0.64, 0.64, 8.0], "downsample_factor": 2, "encoder_in_feature_size": 10,
        "has_variance": False, "has_twist": False}


def _tiny_params(src: Path, out: Path, **changes) -> Path:
    """`src` (a real Autoware file) with its model_params set to the tiny preset's values and `changes`: the same
    nested layout, thresholds and comments' keys as the node reads them."""
    doc = yaml.safe_load(src.read_text())
    model = doc["/**"]["ros__parameters"]["model_params"]
    model.update(TINY)
    model.update(changes)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def subject():
    return centerpoint_subject(preset="tiny", seed=0, random_weights=True)


@pytest.fixture(scope="module")
def pair(subject, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lint") / "pair"
    save_stages(subject, folder)  # exported once for the module
    return folder


def _report(tmp_path, params=(), onnx_dir=None, config=True, **changes):
    files = [_tiny_params(DATA / "centerpoint_ml_package.param.yaml", tmp_path / "ml.param.yaml", **changes),
             DATA / "centerpoint_common.param.yaml", *params]
    cfg = get_preset("tiny") if config else None
    return lint(LintRequest(cfg, "tiny.py", tuple(files), onnx_dir))


@pytest.mark.parametrize("name, layout", [
    ("centerpoint_ml_package.param.yaml", "flat list per distance bin"),
    ("centerpoint_short_range_ml_package.param.yaml", "per class and distance bin"),
    ("ml_package.param.yaml", "manifest per class and distance bin"),
    ("centerpoint_tiny.param.yaml", "per class"),
    ("centerpoint_single.param.yaml", "one threshold"),
])
def test_every_threshold_layout_is_decoded_as_the_node_decodes_it(name, layout, tmp_path):
    files = [DATA / name]
    if "class_names" not in (DATA / name).read_text():  # the older layouts: the model file of that era had none
        doc = yaml.safe_load((DATA / "centerpoint_ml_package.param.yaml").read_text())
        del doc["/**"]["ros__parameters"]["model_params"]["score_thresholds"]
        (tmp_path / "model.param.yaml").write_text(yaml.safe_dump(doc))
        files.insert(0, tmp_path / "model.param.yaml")
    params = read_params(files, AUTOWARE_NODE)
    table = params.score_thresholds()
    assert table.layout == layout and len(table.table) == 5
    assert all(t == 0.35 for row in table.table for t in row)
    assert params.class_names.value[0] == "CAR" and params.class_names.where.endswith(":model_params.class_names")


def test_real_files_against_the_tiny_model_are_consistent(tmp_path, pair):
    report = _report(tmp_path, onnx_dir=pair)
    assert report.consistent, [f.line() for f in report.mismatches]
    ok = {f.check for f in report.findings if f.status == "ok"}
    assert {"class_names", "voxel_size", "point_cloud_range", "grid", "downsample_factor", "encoder_in_feature_size",
            "head_channels", "has_twist", "num_classes"} <= ok
    assert any(f.check == "score_thresholds" and "0.35" in f.message for f in report.findings)


@pytest.mark.parametrize("change, check, words", [
    ({"voxel_size": [0.16, 0.16, 8.0]}, "voxel_size", ["[0.64, 0.64, 8]", "[0.16, 0.16, 8]"]),
    ({"point_cloud_range": [-51.2, -51.2, -3.0, 51.2, 51.2, 5.0]}, "point_cloud_range", ["-12.8", "-51.2"]),
    ({"point_feature_size": 5}, "point_feature_size", ["4 (tiny.py:model.pts_voxel_encoder.in_channels)",
                                                       "5 (ml.param.yaml:model_params.point_feature_size)"]),
    ({"class_names": ["TRUCK", "CAR", "BUS", "BICYCLE", "PEDESTRIAN"]}, "class_names", ["car, truck", "TRUCK, CAR"]),
    ({"downsample_factor": 4}, "downsample_factor", ["2 (tiny.py:", "4 (ml.param.yaml:model_params.downsample_factor"]),
    ({"encoder_in_feature_size": 9}, "encoder_in_feature_size", ["10 (tiny.py", "9 (ml.param.yaml"]),
])
def test_each_planted_mismatch_is_named_with_both_values(tmp_path, pair, change, check, words):
    report = _report(tmp_path, onnx_dir=pair, **change)
    found = [f for f in report.mismatches if f.check == check]
    assert found and report.exit_code == 1, [f.line() for f in report.findings]
    assert all(w in found[0].message for w in words), found[0].message
    assert "\n" not in found[0].message and not found[0].breaks_comparison


def _no_vel(subject, pair, folder: Path) -> Path:
    """The pair with the vel output dropped from the backbone file (graph surgery)."""
    folder.mkdir()
    shutil.copy(pair / "pts_voxel_encoder.onnx", folder)

    def drop_vel(graph):
        graph.outputs = [t for t in graph.outputs if t.name != "vel"]

    onnx.save(edited(subject.stages[1].onnx(), drop_vel), folder / "pts_backbone_neck_head.onnx")
    return folder


def test_has_twist_without_a_vel_head_in_the_pair(tmp_path, subject, pair):
    no_vel = _no_vel(subject, pair, tmp_path / "no_vel")
    report = _report(tmp_path, onnx_dir=no_vel, has_twist=True)
    [twist] = [f for f in report.mismatches if f.check == "has_twist"]
    assert "has_twist true (ml.param.yaml:model_params.has_twist)" in twist.message
    assert "pts_backbone_neck_head.onnx" in twist.message
    assert _report(tmp_path, onnx_dir=pair, has_twist=True).consistent  # the pair has its vel head


def test_thresholds_the_node_reads_as_zero_and_the_voxel_cap(tmp_path):
    from cp_debug.data.frames import held_out

    params = [_tiny_params(DATA / "centerpoint_short_range_ml_package.param.yaml", tmp_path / "sr.param.yaml",
                           max_voxel_size=50, score_thresholds={"upper_bounds": [50.0],
                                                                "thresholds": {c: [1.0] for c in TINY["class_names"]}})]
    report = lint(LintRequest(get_preset("tiny"), "tiny.py", tuple(params), None, tuple(held_out(1)), "seeds"))
    failed = {f.check: f.message for f in report.mismatches}
    assert "outside [0, 1)" in failed["score_thresholds_range"]
    assert "but the cap is 50 (sr.param.yaml:model_params.max_voxel_size)" in failed["voxel_cap"]
    assert any(f.check == "max_voxels" and f.status == "warning" for f in report.findings)  # 12000 vs 50


def test_unreadable_and_refused_files_are_one_line(tmp_path):
    bad = tmp_path / "bad.param.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    model_params: [1\n")
    with pytest.raises(BadInputError, match="bad.param.yaml: not YAML"):
        read_params([bad], AUTOWARE_NODE)
    other = tmp_path / "other.param.yaml"  # YAML, none of the node's parameters: not an empty, "consistent" file
    other.write_text("/**:\n  ros__parameters:\n    max_range: 100.0\n")
    with pytest.raises(BadInputError, match="other.param.yaml: none of the parameters Autoware's CenterPoint node"):
        read_params([other], AUTOWARE_NODE)
    short = _tiny_params(DATA / "centerpoint_short_range_ml_package.param.yaml", tmp_path / "s.param.yaml",
                         score_thresholds={"upper_bounds": [50.0, 90.0], "thresholds": {"CAR": [0.3, 0.3]}})
    with pytest.raises(BadInputError, match=r"s.param.yaml:model_params.score_thresholds.thresholds.TRUCK is missing"):
        read_params([short], AUTOWARE_NODE).score_thresholds()


def test_pair_from_other_weights_is_named_before_anything_runs(pair):
    other = centerpoint_subject(preset="tiny", seed=1, random_weights=True)
    with pytest.raises(BadInputError) as err:
        deployed_stages(BackendSpec.parse(f"ort@{pair}"), other, {})
    text = str(err.value)
    assert "was not exported from these weights (random (seed 1): no --checkpoint was given)" in text
    assert "34 of 34 weights differ" in text and "--checkpoint" in text and "\n" not in text


def test_autoware_model_folder_is_read_as_spec_at_dir(subject, pair, tmp_path):
    folder = tmp_path / "lidar_centerpoint"
    folder.mkdir()
    for st in ("pts_voxel_encoder", "pts_backbone_neck_head"):
        shutil.copy(pair / f"{st}.onnx", folder / f"{st}_centerpoint_tiny.onnx")
    _tiny_params(DATA / "centerpoint_ml_package.param.yaml", folder / "centerpoint_tiny_ml_package.param.yaml")
    found = deployed_stages(BackendSpec.parse(f"ort@{folder}"), subject, {})
    assert [f.name for f in found.files] == ["pts_voxel_encoder_centerpoint_tiny.onnx",
                                              "pts_backbone_neck_head_centerpoint_tiny.onnx"]
    # a manifest names the files itself
    manifest = tmp_path / "bundle"
    manifest.mkdir()
    shutil.copy(pair / "pts_voxel_encoder.onnx", manifest / "enc.onnx")
    shutil.copy(pair / "pts_backbone_neck_head.onnx", manifest / "head.onnx")
    doc = yaml.safe_load((DATA / "ml_package.param.yaml").read_text())
    doc["/**"]["ros__parameters"].update(encoder_onnx_path="enc.onnx", head_onnx_path="head.onnx")
    (manifest / "ml_package.param.yaml").write_text(yaml.safe_dump(doc))
    assert stage_file(manifest, "pts_backbone_neck_head").name == "head.onnx"
    # and the CLI reads the folder's own parameter files beside the pair
    proc = _cli("lint", "--config", preset_config_path("tiny"), "--onnx", folder, "--json", "-")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["consistent"] and doc["inputs"]["params"][0].endswith("centerpoint_tiny_ml_package.param.yaml")


def test_cli_names_a_mismatch_and_exits_1_and_2(tmp_path, pair):
    params = _tiny_params(DATA / "centerpoint_ml_package.param.yaml", tmp_path / "ml.param.yaml",
                          voxel_size=[0.16, 0.16, 8.0])
    proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "lint", "--preset", "tiny", "--params",
                           str(params), "--params", str(DATA / "centerpoint_common.param.yaml"), "--onnx", str(pair),
                           "--junit", str(tmp_path / "lint.xml")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    from tests.report.junit_schema import read_junit

    cases = read_junit(tmp_path / "lint.xml")["cpdebug.lint"]  # one case per check, valid as CI systems read it
    failed = {name: message for name, _, message in cases if message is not None}
    # the param file's voxel size makes another grid than the pair's too: two checks fail
    assert set(failed) == {"voxel_size", "grid"} and "[0.16, 0.16, 8] (ml.param.yaml:model_params.voxel_size)" in \
        failed["voxel_size"]
    assert len(cases) > 5
    assert "mismatch voxel_size: voxel size: [0.64, 0.64, 8] (preset tiny:model.data_preprocessor.voxel_layer" \
           ".voxel_size) ≠ [0.16, 0.16, 8] (ml.param.yaml:model_params.voxel_size)" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "lint", "--params", str(tmp_path / "none.yaml")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no such file" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    from cp_debug.lint.run import LintRequest
    from cp_debug.recipes.centerpoint.lint import lint
    from cp_debug.models.centerpoint.presets import get_preset

    with pytest.raises(BadInputError, match="a training config alone has nothing to be checked against"):
        lint(LintRequest(get_preset("tiny"), "preset tiny"))  # not "consistent: 0 checks agree"


def test_runs_check_first_stop_on_a_model_pair_mismatch_and_carry_the_rest(tmp_path, subject, pair):
    import cp_debug.recipes.centerpoint.lint as linter
    from cp_debug.lint.run import lint_before_run
    from cp_debug.lidar.record import ModelRecord

    model = ModelRecord.of("tiny", random_weights=True)
    params = _tiny_params(DATA / "centerpoint_ml_package.param.yaml", tmp_path / "ml.param.yaml",
                          voxel_size=[0.16, 0.16, 8.0])
    notes = lint_before_run(model, [params], [pair], linter)
    assert notes[0].startswith("lint mismatch: voxel_size: voxel size: [0.64, 0.64, 8]")
    assert [n.split(":")[1].strip() for n in notes] == ["voxel_size", "grid"]  # 40 × 40 against 160 × 160
    assert lint_before_run(model, [], [pair], linter) == []  # no parameter files: nothing to check first
    with pytest.raises(BadInputError, match="lint: head_channels: .* the run would compare different networks"):
        lint_before_run(model, [params], [_no_vel(subject, pair, tmp_path / "no_vel")], linter)


def _cli(*args) -> subprocess.CompletedProcess:
    """In process (`tests/cli_run.py`); the exit codes 0, 1 and 2 through the entry point are the tests above."""
    from tests.cli_run import cpdebug

    return cpdebug(*args, cwd=ROOT)


def test_sweep_and_trt_kit_check_first_and_sweep_keeps_the_findings(tmp_path, subject, pair):
    params = _tiny_params(DATA / "centerpoint_ml_package.param.yaml", tmp_path / "ml.param.yaml",
                          voxel_size=[0.16, 0.16, 8.0])
    common = DATA / "centerpoint_common.param.yaml"
    proc = _cli("sweep", "--preset", "tiny", "--random-weights", "--n", "1", "--level", "stage", "--backends",
                "torch,ort", "--no-html", "--out", tmp_path / "s", "--params", params, "--params", common)
    assert proc.returncode == 0, proc.stderr
    assert "cpdebug: lint mismatch: voxel_size: voxel size: [0.64, 0.64, 8]" in proc.stderr
    [report] = json.loads((tmp_path / "s" / "sweep.json").read_text())["lint"]  # the same findings, as JSON
    assert report["inputs"]["params"] == [str(params), str(common)] and not report["consistent"]
    voxel = next(f for f in report["findings"] if f["check"] == "voxel_size")
    assert voxel["status"] == "mismatch" and [v["where"] for v in voxel["values"]] == [
        "preset tiny:model.data_preprocessor.voxel_layer.voxel_size", "ml.param.yaml:model_params.voxel_size"]
    assert {f["status"] for f in report["findings"]} >= {"ok", "mismatch"}  # every check, not only the failed ones
    # trt-kit: the pair and the parameter files checked against the model before the reference runs (the same
    # lint_first as sweep's; a pair without the vel head the model has stops it, no kit written)
    proc = _cli("trt-kit", "--preset", "tiny", "--random-weights", "--n", "1", "--onnx-dir",
                _no_vel(subject, pair, tmp_path / "no_vel"), "--params", params, "--out", tmp_path / "kit2")
    assert proc.returncode == 2 and "lint: head_channels:" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "kit2").exists()

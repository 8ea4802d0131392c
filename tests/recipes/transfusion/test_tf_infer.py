"""`cpdebug infer --recipe transfusion`: the head's outputs under AWML's names, the proposals' classes and AWML's
decoded boxes, equal to the model's own forward on the same voxels; CenterPoint's stage options refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.cli_run import cpdebug
from tests.models.transfusion._tiny import tiny_scan

HEAD = ("dense_heatmap", "heatmap", "query_heatmap_score", "center", "height", "dim", "rot", "vel", "query_labels")


def _forward(points: np.ndarray, seed: int):
    from cp_debug.lidar.points import prepare_points
    from cp_debug.lidar.voxelize import voxelize
    from cp_debug.models.transfusion.bbox_coder import predict
    from cp_debug.recipes.transfusion.source import load_transfusion

    loaded = load_transfusion("transfusion-tiny", seed=seed)
    vox = voxelize(prepare_points(points, loaded.cfg), loaded.cfg)
    with torch.no_grad():
        out = loaded.model(vox.voxels, vox.num_points, vox.coors)
    return {k: v.numpy() for k, v in out.items()}, predict(out, loaded.cfg)[0]


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tf-infer") / "scan.bin"
    tiny_scan(3).tofile(path)
    return path


def test_infer_writes_the_head_by_awml_names(scan_file, tmp_path):
    out = tmp_path / "o.npz"
    res = cpdebug("infer", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--seed", "1", "--points",
                  scan_file, "--out", out, "-q")
    assert res.returncode == 0, res.stderr
    assert "points in range" in res.stdout and "of 40 proposals" in res.stdout and str(out) in res.stdout
    got = np.load(out)
    assert set(HEAD) <= set(got.files) and {"boxes", "scores", "labels", "class_names"} <= set(got.files)
    assert got["dense_heatmap"].shape == (1, 5, 32, 32)
    assert got["heatmap"].shape == (1, 5, 40) and got["query_heatmap_score"].shape == (1, 5, 40)
    for name, channels in (("center", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2)):
        assert got[name].shape == (1, channels, 40), name
    assert got["query_labels"].shape == (1, 40) and got["query_labels"].dtype == np.int64
    assert got["boxes"].shape[1] == 9 and len(got["boxes"]) == len(got["scores"]) == len(got["labels"])
    assert str(got["recipe"]) == "transfusion"
    assert json.loads(str(got["model_record"]))["preset"] == "transfusion-tiny"

    ref, dets = _forward(tiny_scan(3), seed=1)
    for name in HEAD:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    np.testing.assert_array_equal(got["boxes"], dets.boxes)
    np.testing.assert_array_equal(got["labels"], dets.labels)


def test_infer_without_points_runs_the_synthetic_scan(tmp_path):
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.models.transfusion.presets import get_preset

    out = tmp_path / "o.npz"
    res = cpdebug("infer", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--out", out, "-q")
    assert res.returncode == 0, res.stderr
    ref, _ = _forward(synthetic_scene(0, get_preset("transfusion-tiny")).points, seed=0)
    got = np.load(out)
    np.testing.assert_array_equal(got["dense_heatmap"], ref["dense_heatmap"])
    np.testing.assert_array_equal(got["query_labels"], ref["query_labels"])


@pytest.mark.parametrize("args, says", [
    (("--encoder", "ort"), "--encoder: CenterPoint's"),
    (("--no-rot-y-axis-reference",), "--(no-)rot-y-axis-reference: CenterPoint's"),
    (("--load-dim", "4"), "--load-dim/--use-dim describe a --points file"),
    (("--preset", "demo"), "unknown TransFusion preset 'demo'"),
])
def test_refusals(args, says, tmp_path):
    preset = [] if "--preset" in args else ["--preset", "transfusion-tiny"]  # an option given twice: refused itself
    argv = ["infer", "--recipe", "transfusion", *preset, "--out", tmp_path / "o.npz", *args]
    res = cpdebug(*argv)
    assert res.returncode == 2 and says in res.stderr, res.stderr


def test_a_transfusion_config_needs_no_recipe(scan_file, tmp_path):
    """`--config` a TransFusion file without `--recipe` (issue 72): the recipe is the one that claims its model.type
    (recipes.catalog), not CenterPoint's reader refusing 'TransFusion'; a type no recipe builds is one line."""
    from pathlib import Path

    import cp_debug

    shipped = Path(cp_debug.__file__).parent / "models" / "transfusion" / "configs" / "transfusion-tiny.py"
    out = tmp_path / "o.npz"
    res = cpdebug("infer", "--config", shipped, "--seed", "1", "--points", scan_file, "--out", out, "-q")
    assert res.returncode == 0, res.stderr
    got = np.load(out)
    assert str(got["recipe"]) == "transfusion"
    np.testing.assert_array_equal(got["dense_heatmap"], _forward(tiny_scan(3), seed=1)[0]["dense_heatmap"])

    other = tmp_path / "pointrcnn.py"
    other.write_text("model = dict(type='PointRCNN')\n")
    res = cpdebug("infer", "--config", other, "--out", out)
    assert res.returncode == 2, res.stderr
    assert "model.type = 'PointRCNN' is built by no recipe" in res.stderr and "--recipe transfusion" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr

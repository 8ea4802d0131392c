"""Whole synthetic scenes: GT boxes hold points of the cloud, determinism by seed, occlusion, seed ranges."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.data.boxes import count_points_in_boxes
from cp_debug.data.frames import held_out
from cp_debug.data.ray_casting import lidar_returns
from cp_debug.data.scene_layout import add_object
from cp_debug.data.scene_spec import Primitives, SceneSpec
from cp_debug.data.scenes import HELDOUT_SEED_BASE, make_scene, scene_token, training_seeds
from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.lidar.synthetic import Scene, synthetic_scene

DEMO = get_preset("demo")


@pytest.fixture(scope="module")
def scene() -> Scene:
    return make_scene(DEMO, 7)


def test_scene_layout_and_columns(scene):
    assert isinstance(scene, Scene)
    assert scene.points.dtype == np.float32 and scene.points.shape[1] == 5
    assert scene.boxes.shape == (len(scene.labels), 9) and len(scene.boxes) >= 5
    assert set(np.unique(scene.labels)) <= set(range(5))
    assert np.all(scene.points[:, 4] == 0)  # key-frame time lag
    assert scene.points[:, 3].min() >= 0 and scene.points[:, 3].max() <= 255
    # a spinning sensor at 1.9 m: nothing beyond the range, ground around z = 0
    assert np.hypot(scene.points[:, 0], scene.points[:, 1]).max() <= 51.2
    assert abs(np.median(scene.points[:, 2])) < 0.2
    # sizes: a car is ~4.6 x 1.9, a pedestrian is under a metre long
    cars, peds = scene.boxes[scene.labels == 0], scene.boxes[scene.labels == 4]
    assert len(cars) and np.all((cars[:, 3] > 3) & (cars[:, 3] < 6.5))
    assert len(peds) == 0 or np.all(peds[:, 3] < 1.2)


def test_every_gt_box_contains_points_of_the_cloud(scene):
    counts = count_points_in_boxes(scene.points, scene.boxes)
    assert np.all(counts >= 5), counts  # GT keeps objects with >= 5 returns (noise may push 1-2 just outside)
    # points are on visible surfaces: no box is filled with returns through its volume
    assert counts.sum() < 0.25 * len(scene.points)


def test_deterministic_by_seed():
    a, b, c = make_scene(DEMO, 11), make_scene(DEMO, 11), make_scene(DEMO, 12)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.boxes, b.boxes)
    assert a.points.shape != c.points.shape or not np.array_equal(a.points, c.points)


def test_occlusion_hides_points_behind_a_near_object():
    spec = SceneSpec(max_range=40.0, walls=0, poles=0, blobs=0)
    far = np.array([20.0, 0.0, 0.0, 4.6, 1.9, 1.6, np.pi / 2, 0.0, 0.0])
    near = np.array([8.0, 0.0, 0.0, 4.6, 1.9, 1.6, np.pi / 2, 0.0, 0.0])

    def far_points(with_near: bool) -> int:
        prims = Primitives([])
        add_object(prims, "car", far, 0)
        if with_near:
            add_object(prims, "car", near, 1)
        _, owner = lidar_returns(np.random.default_rng(0), spec, prims)
        return int((owner == 0).sum())

    alone, behind = far_points(False), far_points(True)
    assert alone > 20
    assert behind < 0.3 * alone


def test_density_falls_with_range():
    spec = SceneSpec(max_range=50.0, walls=0, poles=0, blobs=0, dropout=0.0)
    counts = []
    for x in (10.0, 30.0):
        prims = Primitives([])
        add_object(prims, "car", np.array([x, 0.0, 0.0, 4.6, 1.9, 1.6, np.pi / 2, 0.0, 0.0]), 0)
        _, owner = lidar_returns(np.random.default_rng(0), spec, prims)
        counts.append(int((owner == 0).sum()))
    assert counts[1] < 0.5 * counts[0]


def test_a_small_range_keeps_a_25_m_scenes_objects():
    """Object counts are per area: on the tiny preset's +-12.8 m (max range 12.5 m) a scene would hold about one box,
    too few for an evaluation. Under 25 m a scene keeps a 25 m scene's objects, packed closer, and a share of its
    clutter; a 25 m range (tests/pillars032: +-25.6 m) is laid out as before."""
    from cp_debug.data.scene_spec import SMALL_RANGE, scene_spec
    from tests.pillars032 import TINY_032

    tiny, wide = get_preset("tiny"), get_preset(TINY_032)
    as_before = scene_spec(wide)
    assert as_before == SceneSpec(max_range=as_before.max_range) and as_before.max_range > SMALL_RANGE
    small = scene_spec(tiny)
    assert small.max_range < SMALL_RANGE and small.walls < SceneSpec.walls and small.poles < SceneSpec.poles
    seeds = range(HELDOUT_SEED_BASE, HELDOUT_SEED_BASE + 12)
    n_small = [len(make_scene(tiny, s).boxes) for s in seeds]
    n_wide = [len(make_scene(wide, s).boxes) for s in seeds]
    # as many boxes as a 25 m scene's, give or take a fifth (the layout places them by chance), most scenes with one
    assert 0.8 * sum(n_wide) <= sum(n_small) <= 1.2 * sum(n_wide), (n_small, n_wide)
    assert sum(n > 0 for n in n_small) >= 10, n_small
    plain = [len(make_scene(tiny, s, SceneSpec(max_range=small.max_range)).boxes) for s in seeds]
    assert sum(plain) < 0.25 * sum(n_small), plain  # what the spec of a 50 m scene would give on it


def test_heldout_seeds_are_disjoint_from_training_seeds():
    held = held_out(2)
    assert [f.token for f in held] == [scene_token(HELDOUT_SEED_BASE), scene_token(HELDOUT_SEED_BASE + 1)]
    assert list(training_seeds(3, 5)) == [5, 6, 7]
    with pytest.raises(BadInputError, match="held-out"):
        training_seeds(10, HELDOUT_SEED_BASE - 5)


def test_old_synthetic_scene_still_works():
    """Its columns hold what they say: x, y, z inside the preset's range, intensity, time lag 0; its boxes are
    [x, y, z_bottom, l, w, h, yaw, vx, vy] on the ground, moving along their yaw, each with returns of the cloud."""
    cfg = get_preset("tiny")
    s = synthetic_scene(0, cfg)
    assert s.points.dtype == np.float32 and s.points.shape == (s.num_points, 5) and s.num_points > 10_000
    assert np.isfinite(s.points).all()
    x, y, z, intensity, time = s.points.T
    lo, hi = np.array(cfg.point_cloud_range[:3]), np.array(cfg.point_cloud_range[3:])
    assert ((s.points[:, :3] > lo) & (s.points[:, :3] < hi)).all()
    assert abs(np.median(z)) < 0.2  # mostly ground returns, around z = 0
    assert intensity.min() >= 0 and intensity.max() <= 120 and intensity.std() > 5  # a spread of reflectivities
    assert (time == 0).all()  # one sweep: no time lag
    assert s.boxes.dtype == np.float32 and s.boxes.shape == (len(s.labels), 9) and len(s.labels) > 0
    assert set(s.labels.tolist()) <= set(range(len(s.class_names)))
    assert (s.boxes[:, 2] == 0).all() and (s.boxes[:, 3:6] > 0).all() and (np.abs(s.boxes[:, 6]) <= np.pi).all()
    speed = np.hypot(s.boxes[:, 7], s.boxes[:, 8])
    np.testing.assert_allclose(s.boxes[:, 7:9], speed[:, None] * np.stack([np.cos(s.boxes[:, 6]),
                                                                           np.sin(s.boxes[:, 6])], 1), atol=1e-4)
    for box in s.boxes:  # returns on each object's surface, within its footprint
        near = np.hypot(x - box[0], y - box[1]) < 0.5 * np.hypot(box[3], box[4])
        assert near.sum() >= 20


def test_scenes_cli_writes_a_folder_and_refuses_bad_input(tmp_path):
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    res = CliRunner().invoke(app, ["scenes", "--preset", "tiny", "--n", "2", "--out", str(tmp_path / "s"), "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "s" / "points").iterdir()) == [f"{scene_token(0)}.pcd.bin",
                                                                          f"{scene_token(1)}.pcd.bin"]
    assert (tmp_path / "s" / "infos.pkl").is_file()
    for args, msg in ((["--n", "0"], "at least 1"), (["--seed", str(HELDOUT_SEED_BASE)], "held-out"),
                      (["--preset", "nope"], "unknown CenterPoint preset")):
        res = CliRunner().invoke(app, ["scenes", "--out", str(tmp_path / "x"), *args])
        assert res.exit_code == 2 and msg in res.output, res.output


def test_scenes_cli_in_a_subprocess_says_nothing_third_party_when_quiet(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "scenes", "--preset", "tiny", "--n", "1",
                        "--out", str(tmp_path / "s"), "-q"], capture_output=True, text=True, timeout=120, cwd=root,
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""  # -q: no progress, no count line (nothing third-party was caught)
    assert (tmp_path / "s" / "infos.pkl").is_file()

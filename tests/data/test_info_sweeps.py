"""T4 / AWML info files with `lidar_sweeps`: sweeps moved into the key frame, time lags, close points dropped, the
config's columns, as mmdet3d's LoadPointsFromMultiSweeps(test_mode) builds a scan; and the one-line errors."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest

from cp_debug.data.infos import read_infos
from cp_debug.errors import BadInputError
from cp_debug.data.frames import from_infos
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.data.point_files import load_points, load_with_sweeps

TINY = get_preset("tiny")  # range ±25.6 m, z -3..5; use_dim x, y, z, time; AWML's sweeps_num=1, remove_close
KEY_TS = 1_700_000_000.5  # seconds, as mmdet3d v1.x / AWML info files store them
ROT_Z90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # (x, y) -> (-y, x)


def _lidar2sensor(rotation, translation) -> list:
    """The inverse of the sweep -> key-frame transform p -> R p + t, as AWML writes `lidar_points.lidar2sensor`."""
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rotation, translation
    return np.linalg.inv(m).tolist()


def _points(rows) -> np.ndarray:
    return np.asarray(rows, np.float32)  # x, y, z, intensity, ring


def _t4_info(tmp_path):
    """A data root with a key frame and three sweeps (the third's file missing); the info file elsewhere."""
    root = tmp_path / "t4"
    files = {"key": _points([[5, 5, 0, 10, 7], [-3, 2, 1, 20, 7]]),
             "s0": _points([[10, 0, 0, 30, 3], [0.5, -0.5, 0, 40, 3], [0, 4, -1, 50, 3]]),  # row 1: close, dropped
             "s1": _points([[2, 2, 0, 60, 9], [99, 0, 0, 70, 9]])}  # row 1: out of range once moved
    for name, pts in files.items():
        (root / "scene" / "lidar").mkdir(parents=True, exist_ok=True)
        pts.tofile(root / "scene" / "lidar" / f"{name}.pcd.bin")

    def sweep(name, ts, rotation, translation):
        return {"timestamp": ts, "sample_data_token": name,
                "lidar_points": {"lidar_path": f"scene/lidar/{name}.pcd.bin",
                                 "lidar2sensor": _lidar2sensor(rotation, translation)}}

    entry = {"sample_idx": 0, "token": "t4-sample", "timestamp": KEY_TS,
             "lidar_points": {"lidar_path": "scene/lidar/key.pcd.bin", "num_pts_feats": 5}, "instances": [],
             "lidar_sweeps": [sweep("s0", KEY_TS - 0.1, ROT_Z90, [0, 0, 0.5]),  # R^T t = t: exact in mmdet3d's form
                              sweep("s1", KEY_TS - 0.2, np.eye(3), [1, 2, 0]),
                              sweep("s2", KEY_TS - 0.3, np.eye(3), [0, 0, 0])]}  # no file: read only past 2
    info = tmp_path / "infos" / "t4dataset_x_infos_test.pkl"
    info.parent.mkdir()
    info.write_bytes(pickle.dumps({"metainfo": {"categories": {"car": 0}}, "data_list": [entry]}))
    return info, root


def test_sweeps_move_into_the_key_frame_with_time_lags_and_close_points_dropped(tmp_path):
    info, root = _t4_info(tmp_path)
    cfg = replace(TINY, sweeps_num=2)
    (sample,) = read_infos(info, root, sweeps_num=2)
    assert sample.timestamp == KEY_TS and len(sample.sweeps) == 3
    assert sample.sweeps[0].path == root / "scene/lidar/s0.pcd.bin"  # resolved against the data root
    loaded = load_with_sweeps(sample.lidar_path, cfg, sample.sweeps[:2], remove_close=True)
    expected = np.array([[5, 5, 0, 0], [-3, 2, 1, 0],  # key frame: time 0
                         [0, 10, 0.5, 0.1], [-4, 0, -0.5, 0.1],  # s0 rotated 90° about z, raised 0.5 m
                         [3, 4, 0, 0.2]], np.float32)  # s1 shifted by (1, 2, 0); (100, 2, 0) left the range
    np.testing.assert_allclose(loaded.points, expected, atol=1e-5)
    assert loaded.points.shape[1] == cfg.in_channels  # use_dim (0, 1, 2, 4): intensity and ring gone
    assert (loaded.sweeps, loaded.points_read, loaded.out_of_range_dropped) == (2, 2 + 2 + 2, 1)

    kept_close = load_with_sweeps(sample.lidar_path, cfg, sample.sweeps[:2], remove_close=False).points
    assert len(kept_close) == len(expected) + 1 and [0.5, 0.5, 0.5] in kept_close[:, :3].round(5).tolist()

    with pytest.raises(BadInputError, match=r"t4-sample sweep 2: sweep file .*s2\.pcd\.bin not found.*--data-root"):
        read_infos(info, root, sweeps_num=3)


def test_eval_scenes_take_the_configs_sweeps_and_no_sweeps_is_the_key_frame_alone(tmp_path):
    info, root = _t4_info(tmp_path)
    (one,) = from_infos(info, TINY, data_root=root)  # AWML's sweeps_num=1: the nearest sweep
    assert len(one.source.sweeps) == 1 and len(one.load(TINY).points) == 4
    (none,) = from_infos(info, replace(TINY, sweeps_num=0), data_root=root)
    assert np.array_equal(none.load(TINY).points, load_points(root / "scene/lidar/key.pcd.bin", TINY))


def test_v0_style_sensor2lidar_keys_and_microsecond_timestamps(tmp_path):
    pts = _points([[3, 0, 0, 1, 0]])
    pts.tofile(tmp_path / "key.bin")
    pts.tofile(tmp_path / "s.bin")
    entry = {"token": "nu", "timestamp": 1_533_151_603_547_590, "lidar_points": {"lidar_path": "key.bin"},
             "lidar_sweeps": [{"data_path": "s.bin", "timestamp": 1_533_151_603_497_590,
                               "sensor2lidar_rotation": ROT_Z90, "sensor2lidar_translation": np.array([1.0, 0, 0])}]}
    (tmp_path / "infos.pkl").write_bytes(pickle.dumps({"data_list": [entry]}))
    (scene,) = from_infos(tmp_path, TINY)
    np.testing.assert_allclose(scene.load(TINY).points, [[3, 0, 0, 0], [1, 3, 0, 0.05]], atol=1e-5)


def test_a_sweep_without_a_transform_is_one_line(tmp_path):
    _points([[3, 0, 0, 1, 0]]).tofile(tmp_path / "p.bin")
    entry = {"token": "bad", "timestamp": 2.0, "lidar_points": {"lidar_path": "p.bin"},
             "lidar_sweeps": [{"timestamp": 1.9, "lidar_points": {"lidar_path": "p.bin"}}]}
    (tmp_path / "infos.pkl").write_bytes(pickle.dumps({"data_list": [entry]}))
    assert len(read_infos(tmp_path, sweeps_num=0)) == 1  # not read: not checked
    with pytest.raises(BadInputError, match="sample bad sweep 0 has no transform") as err:
        read_infos(tmp_path, sweeps_num=1)
    assert "\n" not in str(err.value)


def test_sweep_frames_carry_the_data_root_and_sweeps(tmp_path):
    from cp_debug.data.frames import from_scenes

    info, root = _t4_info(tmp_path)
    with pytest.raises(BadInputError, match="--data-root"):
        from_scenes(info, TINY)
    (frame,) = from_scenes(info, replace(TINY, sweeps_num=2), data_root=root)
    scan = frame.load(replace(TINY, sweeps_num=2))
    points, gt = scan.points, scan.truth
    assert len(frame.source.sweeps) == 2 and len(points) == 5 and sorted(set(points[:, 3].round(3))) == [0.0, 0.1, 0.2]
    assert gt is not None and gt.boxes.shape == (0, 9)

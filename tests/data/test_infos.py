"""mmdet3d v1.x info files: the scene set round trip, and a hand-written AWML-style file with relative paths."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cp_debug.data.infos import read_infos
from cp_debug.data.scene_set import write_scene_set
from cp_debug.data.scenes import make_scene, scene_token
from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.presets import get_preset

TINY = get_preset("tiny")


def test_scene_set_round_trip(tmp_path):
    info = write_scene_set(TINY, tmp_path / "s", [3, 4])
    raw = pickle.loads(info.read_bytes())
    assert raw["metainfo"]["categories"] == {"car": 0, "truck": 1, "bus": 2, "bicycle": 3, "pedestrian": 4}
    entry = raw["data_list"][0]
    assert entry["lidar_points"] == {"lidar_path": f"points/{scene_token(3)}.pcd.bin", "num_pts_feats": 5}
    samples = read_infos(tmp_path / "s")
    assert [s.token for s in samples] == [scene_token(3), scene_token(4)]
    for seed, s in zip((3, 4), samples):
        scene = make_scene(TINY, seed)
        pts = np.fromfile(s.lidar_path, dtype=np.float32).reshape(-1, 5)
        assert np.array_equal(pts, scene.points)
        np.testing.assert_allclose(s.boxes, scene.boxes, rtol=0, atol=1e-5)
        assert np.array_equal(s.labels, scene.labels)
        assert np.all(s.num_lidar_pts >= 5)
    assert not list((tmp_path / "s").glob(".*tmp"))  # no temp files left


def _awml_info(root, rel):
    return {
        "metainfo": {"categories": {"pedestrian": 0, "car": 1, "traffic_cone": 2}, "version": "t4"},
        "data_list": [{
            "sample_idx": 0, "token": "abc",
            "lidar_points": {"lidar_path": rel, "num_pts_feats": 5},
            "instances": [
                {"bbox_3d": [1, 2, -1.5, 4.5, 1.9, 1.6, 0.3], "bbox_label_3d": 1, "velocity": [3.0, float("nan")]},
                {"bbox_3d": [5, 6, -1.6, 0.7, 0.6, 1.7, 0.0], "bbox_label_3d": 0},  # no velocity
                {"bbox_3d": [7, 8, -1.6, 0.4, 0.4, 0.8, 0.0], "bbox_label_3d": 2},  # class we do not have
                {"bbox_3d": [9, 9, -1.6, 4.0, 2.0, 1.5, 0.0], "bbox_label_3d": -1},  # mmdet3d "ignore"
            ],
        }, {"sample_idx": 1, "token": "def", "lidar_points": {"lidar_path": rel}}],  # no instances
    }


def test_reads_a_handwritten_mmdet3d_info_with_relative_paths(tmp_path):
    data_root = tmp_path / "data"
    rel = "db_x/scene_1/data/LIDAR_CONCAT/0.pcd.bin"
    (data_root / rel).parent.mkdir(parents=True)
    np.zeros((10, 5), np.float32).tofile(data_root / rel)
    info = tmp_path / "infos" / "t4_infos_val.pkl"
    info.parent.mkdir()
    info.write_bytes(pickle.dumps(_awml_info(data_root, rel)))

    with pytest.raises(BadInputError, match="data root"):
        read_infos(info)  # relative to the info's folder by default: not there
    a, b = read_infos(info, data_root=data_root)
    assert a.lidar_path == data_root / rel and a.token == "abc"
    np.testing.assert_allclose(a.boxes, [[1, 2, -1.5, 4.5, 1.9, 1.6, 0.3, 3.0, 0.0],
                                         [5, 6, -1.6, 0.7, 0.6, 1.7, 0.0, 0.0, 0.0]])
    assert a.labels.tolist() == [0, 4]  # mapped by category name: car, pedestrian
    assert b.boxes.shape == (0, 9) and b.labels.shape == (0,)


def test_bad_info_files_are_one_clear_error(tmp_path):
    old = tmp_path / "old.pkl"
    old.write_bytes(pickle.dumps({"infos": [], "metadata": {}}))
    with pytest.raises(BadInputError, match="v0.x"):
        read_infos(old)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(BadInputError, match="not a readable pickle"):
        read_infos(junk)
    with pytest.raises(BadInputError, match="does not exist"):
        read_infos(tmp_path / "missing.pkl")

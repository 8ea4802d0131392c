"""A deployment's prediction files: CUDA-CenterPoint's txt folder (columns and det3d yaw convention) and mmdet3d
results pickles (mmdet3d's box class read without mmdet3d), and one line for each malformed file."""

from __future__ import annotations

import math
import pickle
import sys
import types

import numpy as np
import pytest

from cp_debug.data.deployed_detections import (read_cuda_centerpoint, read_mmdet3d_pkl, write_cuda_centerpoint,
                                               write_mmdet3d_pkl)
from cp_debug.errors import BadInputError
from cp_debug.lidar.space import CLASS_NAMES
from cp_debug.lidar.boxes import Detections


def _dets() -> Detections:
    boxes = np.array([[10.0, -3.0, -1.8, 4.6, 1.9, 1.6, 0.7, 3.0, -1.0],
                      [-5.0, 8.0, -1.9, 0.7, 0.6, 1.75, -2.9, 0.0, 0.0]], np.float32)
    return Detections(boxes, np.array([0.9, 0.45], np.float32), np.array([0, 4]), CLASS_NAMES)


def test_cuda_centerpoint_columns_and_conventions(tmp_path):
    # One line as SaveBoxPred writes it: x y z w l h vx vy rt id score; a car (id 0) heading along +x has
    # det3d rt = -0 - pi/2; z is the centre. A barrier (id 5) is not one of our classes.
    (tmp_path / "p").mkdir()
    rt = -math.pi / 2
    (tmp_path / "p" / "tok1.txt").write_text(f"1.0 2.0 0.0 1.9 4.6 1.6 3.0 0.0 {rt:.5f} 0 0.8 \n"
                                             "4.0 4.0 0.0 0.5 2.0 1.0 0.0 0.0 0.0 5 0.7 \n")
    (tmp_path / "p" / "tok2.txt").write_text("")
    r = read_cuda_centerpoint(tmp_path / "p", CLASS_NAMES)
    assert set(r.frames) == {"tok1", "tok2"} and r.skipped == 1 and len(r.frames["tok2"]) == 0
    np.testing.assert_allclose(r.frames["tok1"].boxes[0], [1.0, 2.0, -0.8, 4.6, 1.9, 1.6, 0.0, 3.0, 0.0], atol=1e-5)
    write_cuda_centerpoint(tmp_path / "q", {"a": _dets()}, CLASS_NAMES)
    back = read_cuda_centerpoint(tmp_path / "q", CLASS_NAMES).frames["a"]
    np.testing.assert_allclose(back.boxes, _dets().boxes, atol=2e-5)
    np.testing.assert_array_equal(back.labels, [0, 4])


def test_cuda_centerpoint_bad_files_are_one_line(tmp_path):
    with pytest.raises(BadInputError, match="not a folder"):
        read_cuda_centerpoint(tmp_path / "nope", CLASS_NAMES)
    with pytest.raises(BadInputError, match="no .txt"):
        read_cuda_centerpoint(tmp_path, CLASS_NAMES)
    (tmp_path / "t.txt").write_text("1 2 3 4 5 6 7 8 9 0 0.5\n1 2 3\n")
    with pytest.raises(BadInputError, match=r"t.txt line 2: .* expected 11 numbers"):
        read_cuda_centerpoint(tmp_path, CLASS_NAMES)


def test_mmdet3d_pkl_round_trip_and_boxes_of_a_class_that_is_not_installed(tmp_path):
    torch = pytest.importorskip("torch")
    write_mmdet3d_pkl(tmp_path / "r.pkl", {"scene_a": _dets()})
    got = read_mmdet3d_pkl(tmp_path / "r.pkl", CLASS_NAMES).frames["scene_a"]
    np.testing.assert_array_equal(got.boxes, _dets().boxes)

    # mmdet3d 1.x: LiDARInstance3DBoxes holding a torch tensor, pickled from a module absent here.
    mod = types.ModuleType("mmdet3d_fake_boxes")

    class LiDARInstance3DBoxes:
        def __init__(self, tensor):
            self.tensor, self.box_dim, self.with_yaw = tensor, tensor.shape[1], True

    LiDARInstance3DBoxes.__module__ = mod.__name__
    LiDARInstance3DBoxes.__qualname__ = "LiDARInstance3DBoxes"
    mod.LiDARInstance3DBoxes = LiDARInstance3DBoxes
    sys.modules[mod.__name__] = mod
    try:
        sample = {"lidar_path": "data/points/scene_b.pcd.bin", "sample_idx": 3,
                  "pred_instances_3d": {"bboxes_3d": LiDARInstance3DBoxes(torch.from_numpy(_dets().boxes[:, :7])),
                                        "scores_3d": torch.tensor([0.9, 0.45]), "labels_3d": torch.tensor([0, 4])}}
        (tmp_path / "v1.pkl").write_bytes(pickle.dumps([sample]))
    finally:
        del sys.modules[mod.__name__]
    got = read_mmdet3d_pkl(tmp_path / "v1.pkl", CLASS_NAMES).frames["scene_b"]
    np.testing.assert_allclose(got.boxes[:, :7], _dets().boxes[:, :7])
    assert np.all(got.boxes[:, 7:] == 0)


def test_mmdet3d_pkl_malformed_is_one_line(tmp_path):
    (tmp_path / "a.pkl").write_bytes(b"not a pickle")
    with pytest.raises(BadInputError, match="not a readable results pickle"):
        read_mmdet3d_pkl(tmp_path / "a.pkl", CLASS_NAMES)
    (tmp_path / "b.pkl").write_bytes(pickle.dumps([{"token": "t", "pts_bbox": {"boxes_3d": np.zeros((2, 5))}}]))
    with pytest.raises(BadInputError, match="sample 0 has no pred_instances_3d"):
        read_mmdet3d_pkl(tmp_path / "b.pkl", CLASS_NAMES)
    bad = {"token": "t", "pts_bbox": {"boxes_3d": np.zeros((2, 9)), "scores_3d": [0.1, 0.2], "labels_3d": [0, 9]}}
    (tmp_path / "c.pkl").write_bytes(pickle.dumps([bad]))
    with pytest.raises(BadInputError, match="a label outside 0..4"):
        read_mmdet3d_pkl(tmp_path / "c.pkl", CLASS_NAMES)

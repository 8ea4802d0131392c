from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.models.centerpoint.decode import HEAD_NAMES, decode
from cp_debug.lidar.boxes import circle_nms
from tests.pillars032 import TINY_032

# TINY_032: tiny's modules on +-25.6 m of 0.32 m pillars: 80x80 head maps, out_size_factor 2, x/y min -25.6
CFG = get_preset(TINY_032)


def _blank(logit=-10.0):
    w, h = CFG.head_size
    maps = {n: np.zeros((1, c, h, w), np.float32) for n, c in CFG.head_channels().items()}
    maps["heatmap"][:] = logit
    maps["rot"][:, 1] = 1.0  # yaw 0
    return maps


def _plant(maps, cls, row, col, logit=2.0, reg=(0.25, 0.75), height=0.9, lwh=(4.5, 1.9, 1.6), yaw=0.3, vel=(1.0, -2.0)):
    maps["heatmap"][0, cls, row, col] = logit
    maps["reg"][0, :, row, col] = reg
    maps["height"][0, 0, row, col] = height
    maps["dim"][0, :, row, col] = np.log(lwh)
    maps["rot"][0, :, row, col] = (math.sin(yaw), math.cos(yaw))
    maps["vel"][0, :, row, col] = vel


def test_planted_peak_decodes_to_expected_box():
    maps = _blank()
    _plant(maps, cls=0, row=30, col=50)
    d = decode(maps, CFG)
    assert len(d) == 1
    x = (50 + 0.25) * 2 * 0.32 - 25.6
    y = (30 + 0.75) * 2 * 0.32 - 25.6
    expected = [x, y, 0.9 - 1.6 / 2, 4.5, 1.9, 1.6, 0.3, 1.0, -2.0]
    np.testing.assert_allclose(d.boxes[0], expected, atol=1e-4)
    assert d.labels.tolist() == [0]
    assert d.scores[0] == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-6)
    assert d.boxes.dtype == np.float32 and d.labels.dtype == np.int64


def test_sigmoid_is_applied():
    """Raw logits of 0.05 would pass a 0.1 threshold read as probabilities without sigmoid...: no box."""
    maps = _blank(logit=-3.0)  # sigmoid(-3) = 0.047 < 0.1 everywhere
    assert len(decode(maps, CFG)) == 0
    maps["heatmap"][0, 2, 10, 10] = -2.0  # sigmoid = 0.119 > 0.1
    d = decode(maps, CFG)
    assert len(d) == 1 and d.labels[0] == 2


def test_heat_activation_replays_a_missing_or_doubled_sigmoid():
    maps = _blank()
    _plant(maps, cls=0, row=30, col=50, logit=2.0)
    _plant(maps, cls=1, row=10, col=10, logit=0.05)  # a logit of 0.05: below 0.1 without sigmoid, above with it
    raw = decode(maps, CFG, heat_activation="none")
    assert len(raw) == 1 and raw.scores[0] == pytest.approx(2.0)
    twice = decode(maps, CFG, heat_activation="sigmoid_twice")
    assert twice.scores.min() >= 0.5 and len(twice) == CFG.post_max_size  # every cell passes the threshold
    with pytest.raises(BadInputError, match="heat_activation"):
        decode(maps, CFG, heat_activation="softmax")


def test_torch_and_tuple_inputs_give_the_same():
    maps = _blank()
    _plant(maps, 1, 5, 6)
    _plant(maps, 4, 60, 70, logit=0.5)
    a = decode(maps, CFG)
    b = decode(tuple(torch.from_numpy(maps[n]) for n in HEAD_NAMES), CFG)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert a.scores[0] > a.scores[1]


def test_circle_nms_suppresses_within_one_metre_squared():
    maps = _blank()
    _plant(maps, 0, 40, 40, logit=3.0, reg=(0.0, 0.0))
    _plant(maps, 1, 40, 41, logit=2.0, reg=(0.0, 0.0))  # 0.64 m away: dist^2 0.41 <= 1 -> suppressed
    _plant(maps, 0, 40, 43, logit=1.0, reg=(0.0, 0.0))  # 1.92 m away: kept
    d = decode(maps, CFG)
    assert len(d) == 2
    assert d.labels.tolist() == [0, 0]
    keep = circle_nms(np.array([[0, 0], [0.9, 0], [3, 0]], np.float32), np.array([0.5, 0.9, 0.1]), 1.0, 100)
    assert keep.tolist() == [1, 2]
    assert circle_nms(np.zeros((0, 2)), np.zeros(0), 1.0, 100).tolist() == []


def test_post_max_size_and_post_center_range():
    maps = _blank()
    for i in range(150):
        _plant(maps, 0, 2 * (i // 30) + 5, 2 * (i % 30) + 5, logit=1.0 + i * 0.01)
    assert len(decode(maps, CFG)) == 100
    maps = _blank()
    _plant(maps, 0, 10, 10, height=11.0)  # z beyond post_center_range
    assert len(decode(maps, CFG)) == 0


def test_rot_y_axis_reference_is_undone():
    maps = _blank()
    _plant(maps, 3, 20, 20, yaw=0.7, lwh=(1.8, 0.6, 1.3))
    ref = decode(maps, CFG)
    flipped = {k: v.copy() for k, v in maps.items()}
    flipped["dim"] = maps["dim"][:, [1, 0, 2]]
    flipped["rot"] = np.concatenate([-maps["rot"][:, 1:2], -maps["rot"][:, 0:1]], 1)
    got = decode(flipped, CFG, rot_y_axis_reference=True)
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-5)


def test_wrong_head_shape_is_a_clear_error():
    maps = _blank()
    maps["dim"] = maps["dim"][:, :2]
    with pytest.raises(BadInputError, match="dim"):
        decode(maps, CFG)
    with pytest.raises(BadInputError, match="missing"):
        decode({"heatmap": maps["heatmap"]}, CFG)

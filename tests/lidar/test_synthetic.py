from __future__ import annotations

import numpy as np

from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.lidar.synthetic import CLASS_SIZES, synthetic_scene


def test_seeded_and_deterministic():
    a = synthetic_scene(4, get_preset("demo"))
    b = synthetic_scene(4, get_preset("demo"))
    c = synthetic_scene(5, get_preset("demo"))
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.points[:100], c.points[:100])


def test_scene_contents():
    cfg = get_preset("demo")
    s = synthetic_scene(0, cfg, n_boxes=20)
    assert s.points.dtype == np.float32 and s.points.shape[1] == 5
    assert 20_000 < s.num_points < 60_000
    assert (s.points[:, 4] == 0).all()
    assert np.isfinite(s.points).all()
    assert s.boxes.shape == (20, 9) and s.labels.shape == (20,)
    assert set(s.labels.tolist()) <= set(range(5))
    lo, hi = np.array(cfg.point_cloud_range[:2]), np.array(cfg.point_cloud_range[3:5])
    assert (np.abs(s.points[:, :2]) < hi).all() and (s.points[:, :2] > lo).all()
    for box, label in zip(s.boxes, s.labels):  # realistic sizes per class
        ref = np.array(CLASS_SIZES[s.class_names[label]][0])
        assert np.all(np.abs(box[3:6] / ref - 1) <= 0.11)
        # object surface points exist inside each box's footprint
        d = np.hypot(s.points[:, 0] - box[0], s.points[:, 1] - box[1])
        assert (d < 0.5 * np.hypot(box[3], box[4])).sum() >= 20

from __future__ import annotations

import math

import numpy as np

from cp_debug.models.centerpoint.decode import Detections
from cp_debug.recipes.centerpoint.compare_detections import compare_detections


def _dets(rows, scores, labels):
    return Detections(np.asarray(rows, np.float32).reshape(-1, 9), np.asarray(scores, np.float32),
                      np.asarray(labels, np.int64))


def test_identical_sets():
    a = _dets([[0, 0, 0, 4, 2, 1.5, 0, 0, 0], [10, 0, 0, 1, 1, 1.7, 1, 0, 0]], [0.9, 0.5], [0, 4])
    d = compare_detections(a, a)
    assert d.all_matched and d.num_matched == 2 and d.max_centre_dist == 0 and d.max_score_diff == 0


def test_greedy_per_class_with_unmatched():
    a = _dets([[0, 0, 0, 4, 2, 1.5, 0.1, 0, 0], [5, 5, 0, 4, 2, 1.5, 0, 0, 0], [20, 0, 0, 1, 1, 1, 0, 0, 0]],
              [0.9, 0.8, 0.3], [0, 0, 1])
    b = _dets([[0.3, 0, 0, 4.2, 2, 1.5, 0.1 + 2 * math.pi - 0.05, 0, 0], [20, 0, 0, 1, 1, 1, 0, 0, 0],
               [50, 50, 0, 1, 1, 1, 0, 0, 0]], [0.85, 0.3, 0.5], [0, 2, 1])
    d = compare_detections(a, b, max_dist=1.0)
    assert d.num_matched == 1
    m = d.matched[0]
    assert (m.index_a, m.index_b) == (0, 0)
    assert abs(m.centre_dist - 0.3) < 1e-6 and abs(m.size_diff - 0.2) < 1e-5
    assert abs(m.yaw_diff - 0.05) < 1e-5  # wrapped across 2 pi
    assert d.unmatched_a == (1, 2) and d.unmatched_b == (1, 2)  # label 1 vs 2 never match
    assert not d.all_matched
    assert "1 matched of 3 / 3" in d.summary()
    assert d.to_json()["matched"][0]["index_b"] == 0


def test_empty():
    e = Detections.empty()
    d = compare_detections(e, e)
    assert d.all_matched and d.num_matched == 0

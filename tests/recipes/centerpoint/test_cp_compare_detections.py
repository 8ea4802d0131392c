from __future__ import annotations

import math

import numpy as np

from cp_debug.lidar.boxes import Detections
from cp_debug.lidar.compare_detections import compare_detections


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


def _capped_scene(k: int, last_ref: tuple, last_cand: tuple):
    """`k` boxes on each side, the first k-1 the same; the K-th differs: (x, y, yaw, score) on each side."""
    rows = [[4.0 * i, 0, 0, 4, 2, 1.5, 0, 0, 0] for i in range(k - 1)]
    scores = list(np.linspace(0.99, 0.97, k - 1))
    x, y, yaw, s = last_ref
    a = _dets(rows + [[x, y, 0, 4, 2, 1.5, yaw, 0, 0]], scores + [s], [0] * k)
    x, y, yaw, s = last_cand
    return a, _dets(rows + [[x, y, 0, 4, 2, 1.5, yaw, 0, 0]], scores + [s], [0] * k)


def test_a_swap_at_the_box_cap_is_a_flip_not_degradation():
    """Issue 72 item 6: two boxes swapped at the 100-box cut (scores 0.9678 vs 0.9684) on a healthy FP16 GPU sweep:
    the K-th box is a decision like the score threshold, in every verdict (bisect's BoxVerdict, sweep, eval)."""
    from cp_debug.compare.noise import Outcome
    from cp_debug.lidar.box_verdict import box_verdict

    kw = dict(score_threshold=0.1, cell_m=0.32, extent_m=121.6)
    # far apart: one lost, one added, each at its side's K-th score
    a, b = _capped_scene(100, (0.0, 40.0, 0.3, 0.9684), (0.0, -40.0, 1.2, 0.9678))
    v = box_verdict(a, b, cap=100, **kw).judge("fp16")
    assert (v.outcome, v.at_threshold, v.beyond) == (Outcome.WITHIN_PRECISION, 2, 0), v.reason
    assert "flip" in v.reason
    # two tied peaks of one object a fraction of a tenth of a cell apart, their yaws another's: matched, not moved
    a, b = _capped_scene(100, (0.0, 40.0, 0.3, 0.9684), (0.02, 40.0, 0.9, 0.9678))
    v = box_verdict(a, b, cap=100, **kw).judge("fp16")
    assert v.outcome is Outcome.WITHIN_PRECISION and "box cap" in v.reason, v.reason
    # no side full: the cap decided nothing, the same pair moved and turned
    v = box_verdict(a, b, cap=None, **kw).judge("fp16")
    assert v.outcome is Outcome.DEGRADED and v.matched_beyond, v.reason
    # a full side does not excuse a rescored box: scores beyond the band stay degraded
    a, b = _capped_scene(100, (0.0, 40.0, 0.3, 0.9684), (0.02, 40.0, 0.9, 0.90))
    assert box_verdict(a, b, cap=100, **kw).judge("fp16").outcome is Outcome.DEGRADED

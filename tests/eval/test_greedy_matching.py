"""The compiled greedy matching (`eval/greedy.py`) against the loops it stands for: the sweep's tables' flags against
`argmin` in numpy, the boxes taken against nuscenes-devkit's own loop as `accumulate` writes it, on frames of the
sweep's own making, with ties, NaN distances and empty sides."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.eval.devkit import DIST_THS
from cp_debug.eval.greedy import matched_boxes, true_positives, true_positives_numpy

THS = np.asarray(DIST_THS, dtype=np.float64)


def _distances(seed: int, n: int, m: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    det, gt = rng.uniform(-20, 20, (n, 2)), rng.uniform(-20, 20, (m, 2))
    det[: n // 2] = gt[rng.integers(0, m, n // 2)] + rng.normal(0, 1.0, (n // 2, 2))  # half near a box
    return np.hypot(det[:, None, 0] - gt[None, :, 0], det[:, None, 1] - gt[None, :, 1])


@pytest.mark.parametrize(("seed", "n", "m"), [(0, 100, 87), (1, 5, 40), (2, 40, 5), (3, 1, 1), (4, 0, 3)])
def test_the_kernel_flags_what_the_devkits_loop_flags(seed, n, m):
    dist = _distances(seed, n, m) if n else np.zeros((n, m))
    np.testing.assert_array_equal(true_positives(dist, THS), true_positives_numpy(dist, THS))


def test_no_box_no_match():
    assert not true_positives(np.zeros((3, 0)), THS).any()


def test_ties_take_the_first_box_and_a_nan_matches_nothing():
    tied = np.array([[1.0, 1.0, 3.0], [1.0, 1.0, 0.4]])  # the first detection takes box 0, the second box 1
    np.testing.assert_array_equal(true_positives(tied, THS), true_positives_numpy(tied, THS))
    nan = np.array([[np.nan, 0.1], [0.3, np.nan], [0.2, 5.0]])  # argmin returns a NaN first: no match
    got = true_positives(nan, THS)
    np.testing.assert_array_equal(got, true_positives_numpy(nan, THS))
    assert not got[0].any() and not got[1].any() and got[2].all()


def _devkit_loop(dist: np.ndarray, threshold: float) -> list[int]:
    """nuscenes-devkit 1.2.0 `accumulate`'s loop (detection/algo.py), the box each detection takes (-1: none)."""
    taken, took = set(), []
    for pred_idx in range(dist.shape[0]):
        min_dist, match_gt_idx = np.inf, None
        for gt_idx in range(dist.shape[1]):
            if gt_idx not in taken:
                this_distance = dist[pred_idx, gt_idx]
                if this_distance < min_dist:
                    min_dist, match_gt_idx = this_distance, gt_idx
        is_match = min_dist < threshold
        if is_match:
            taken.add(match_gt_idx)
        took.append(match_gt_idx if is_match else -1)
    return took


@pytest.mark.parametrize(("seed", "n", "m"), [(0, 100, 87), (1, 5, 40), (2, 40, 5), (3, 1, 1), (4, 0, 3)])
def test_the_boxes_taken_are_the_devkits_with_its_nan_passed_over(seed, n, m):
    dist = _distances(seed, n, m) if n else np.zeros((n, m))
    if n > 2:
        dist[1, :] = np.nan  # a detection with no distance at all: no match
        dist[2, 0] = np.nan  # one NaN: the devkit passes it over and takes the nearest other box
    want = np.array([_devkit_loop(dist, th) for th in THS], dtype=np.int64).T.reshape(n, len(THS))
    np.testing.assert_array_equal(matched_boxes(dist, THS), want)
    tied = np.array([[1.0, 1.0, 3.0], [1.0, 1.0, 0.4]])
    np.testing.assert_array_equal(matched_boxes(tied, THS)[:, -1], [0, 2])  # at 4 m: the first of a tie, then box 2

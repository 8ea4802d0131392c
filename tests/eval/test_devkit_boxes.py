"""Our boxes as the devkit's DetectionBoxes a sample at a time (`eval/devkit_boxes.py`): each box the one the
devkit's own constructor makes of it, field for field and type for type, and a sample the constructor refuses still
refused by the constructor itself."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.needs("nuscenes-devkit")

from cp_debug.data.frames import held_out  # noqa: E402
from cp_debug.eval.boxes import SampleBoxes  # noqa: E402
from cp_debug.eval.devkit import devkit_modules  # noqa: E402
from cp_debug.eval.devkit_boxes import _made_checked, to_eval_boxes  # noqa: E402
from cp_debug.models.centerpoint.presets import get_preset  # noqa: E402

CLASSES = ("car", "truck", "bus", "bicycle", "pedestrian")


def _fields(box) -> list:
    """A box's fields with the type of each value, and whether its translation is its ego translation."""
    d = box.__dict__
    return sorted((k, repr(v), type(v).__name__, [type(x).__name__ for x in v] if isinstance(v, list) else None)
                  for k, v in d.items()) + [box.translation is box.ego_translation]


def _both(samples: dict, is_gt: bool):
    EvalBoxes, _, names, DetectionBox, _, _ = devkit_modules()
    fast = to_eval_boxes(samples, sorted(samples), CLASSES, is_gt, DetectionBox, EvalBoxes, names)
    plain = {t: _made_checked(t, sb, list(CLASSES), is_gt, DetectionBox) for t, sb in samples.items()}
    return fast, plain


def test_the_ground_truth_of_held_out_frames_as_the_devkits_constructor_makes_it():
    cfg = get_preset("tiny")
    samples = {}
    for f in held_out(3):
        gt = f.load(cfg).truth  # the synthetic scenes count no points: counts as floats, as an info file's may be
        samples[f.token] = SampleBoxes(gt.boxes, gt.labels, num_points=(np.arange(len(gt.labels)) % 7) * 1.0)
    assert sum(len(s) for s in samples.values()) > 10
    fast, plain = _both(samples, is_gt=True)
    for token, boxes in plain.items():
        assert [_fields(b) for b in fast[token]] == [_fields(b) for b in boxes]


def test_detections_with_float_labels_and_a_nan_velocity_are_the_constructors_boxes():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(40, 9)) * 8
    rows[:, 3:6] = np.abs(rows[:, 3:6]) + 0.3
    rows[5, 7] = np.nan  # the devkit takes a NaN velocity (its database has some)
    samples = {"s1": SampleBoxes(rows, rng.integers(0, 5, 40).astype(np.float32), rng.random(40).astype(np.float32)),
               "s2": SampleBoxes(np.zeros((0, 9)), np.zeros(0, np.int64), np.zeros(0))}
    fast, plain = _both(samples, is_gt=False)
    assert [_fields(b) for b in fast["s1"]] == [_fields(b) for b in plain["s1"]]
    assert fast["s2"] == [] and "s2" in fast.sample_tokens


def test_a_sample_the_devkit_refuses_is_refused_by_its_own_constructor():
    rows = np.tile([1.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0], (3, 1))
    samples = {"s": SampleBoxes(rows, np.array([0, 1, 2]), np.array([0.9, np.nan, 0.5]))}
    EvalBoxes, _, names, DetectionBox, _, _ = devkit_modules()
    with pytest.raises(AssertionError, match="detection_score may not be NaN"):
        to_eval_boxes(samples, ["s"], CLASSES, False, DetectionBox, EvalBoxes, names)

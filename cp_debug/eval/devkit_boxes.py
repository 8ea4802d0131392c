"""Our boxes as nuscenes-devkit's `DetectionBox`es, a sample's array at a time.

The devkit's `DetectionBox.__init__` checks each box on its own — six `np.any(np.isnan(...))` over short lists and a
type check per field —, 44 us a box on the CPU machine: with a class's boxes made again for each part of a sweep's
evaluation (as it once was), making boxes was about as long as the devkit's own matching. Here a sample's
boxes are checked at once against the same conditions (finite box fields, known class names, float scores that are
not NaN, integer point counts), and each box is then made without its per-box checks, its fields the very values
and types `box_to_nuscenes` and the devkit's constructor give (lists of Python floats, the translation list also
the ego translation, the rotation from `math.cos`/`math.sin` as `yaw_to_quaternion` has it: numpy's vectorised sine
may differ in the last bit from one CPU to the next). A sample that fails a check is made as before, box by box by
the devkit's own constructor, so that its own assertion says what is wrong.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from cp_debug.eval.boxes import SampleBoxes, box_to_nuscenes


def to_eval_boxes(samples: Mapping[str, SampleBoxes], tokens: Sequence[str], class_names: Sequence[str],
                  is_gt: bool, DetectionBox, EvalBoxes, known_names) -> object:
    """The devkit's `EvalBoxes` of `samples` for `tokens` (a token without a sample gets no box): ground truth
    (`is_gt`: score -1, the point counts where known) or detections (their scores). `DetectionBox`, `EvalBoxes`,
    `known_names`: the devkit's classes and its DETECTION_NAMES."""
    out = EvalBoxes()
    names = list(class_names)
    for token in tokens:
        sb = samples.get(token)
        if sb is None or not len(sb):
            out.add_boxes(token, [])
        elif type(token) is str and _checked(sb, names, is_gt, known_names):
            out.add_boxes(token, _made(token, sb, names, is_gt, DetectionBox))
        else:
            out.add_boxes(token, _made_checked(token, sb, names, is_gt, DetectionBox))
    return out


def _checked(sb: SampleBoxes, names: list[str], is_gt: bool, known_names) -> bool:
    """Whether every box of `sb` passes what `DetectionBox.__init__` asserts (as the fields it is given)."""
    boxes = np.asarray(sb.boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 9 or not np.isfinite(boxes[:, :7]).all():
        return False  # velocity may be NaN for the devkit, the other fields not (nor ±inf: a NaN once combined)
    if not np.isfinite(boxes[:, 2] + boxes[:, 5] / 2.0).all():
        return False  # the translation's z, as made
    labels = np.asarray(sb.labels)
    if labels.min() < 0 or labels.max() >= len(names) or np.any(labels != labels.astype(np.int64)) \
            or any(names[int(i)] not in known_names for i in set(labels.tolist())):
        return False
    if is_gt:  # the point counts go through int(), as the devkit's constructor is given them
        return sb.num_points is None or bool(np.isfinite(np.asarray(sb.num_points, dtype=np.float64)).all())
    return sb.scores is not None and not np.isnan(np.asarray(sb.scores, dtype=np.float64)).any()


def _made(token: str, sb: SampleBoxes, names: list[str], is_gt: bool, DetectionBox) -> list:
    """The boxes of a checked sample, each a `DetectionBox` given its fields without the per-box checks."""
    rows = np.asarray(sb.boxes, dtype=np.float64).tolist()
    labels = [int(v) for v in np.asarray(sb.labels).tolist()]
    points = ([int(n) for n in np.asarray(sb.num_points).tolist()] if is_gt and sb.num_points is not None
              else [-1] * len(rows))
    scores = [-1.0] * len(rows) if is_gt else [float(s) for s in np.asarray(sb.scores, dtype=np.float64).tolist()]
    new, cos, sin = DetectionBox.__new__, math.cos, math.sin
    made = []
    for (x, y, zb, length, width, height, yaw, vx, vy), label, n, score in zip(rows, labels, points, scores):
        box = new(DetectionBox)
        translation = [x, y, zb + height / 2.0]
        box.__dict__ = {"sample_token": token, "translation": translation, "size": [width, length, height],
                        "rotation": [cos(yaw / 2.0), 0.0, 0.0, sin(yaw / 2.0)], "velocity": [vx, vy],
                        "ego_translation": translation, "num_pts": n, "detection_name": names[label],
                        "detection_score": score, "attribute_name": ""}  # the constructor's order of fields
        made.append(box)
    return made


def _made_checked(token: str, sb: SampleBoxes, names: list[str], is_gt: bool, DetectionBox) -> list:
    """The boxes of a sample that failed a check, made by the devkit's constructor (its assertion says which)."""
    boxes = []
    for i in range(len(sb)):
        nb = box_to_nuscenes(sb.boxes[i])
        boxes.append(DetectionBox(sample_token=token, translation=nb["translation"], size=nb["size"],
                                  rotation=nb["rotation"], velocity=nb["velocity"],
                                  ego_translation=nb["translation"],  # lidar frame taken as the ego frame
                                  num_pts=int(sb.num_points[i]) if is_gt and sb.num_points is not None else -1,
                                  detection_name=names[int(sb.labels[i])],
                                  detection_score=-1.0 if is_gt else float(sb.scores[i]), attribute_name=""))
    return boxes

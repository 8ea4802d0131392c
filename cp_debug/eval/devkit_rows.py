"""The devkit's center distances worked out ahead of its `accumulate`, and looked up inside it.

nuscenes-devkit's `accumulate` walks every detection of a class in score order against every ground-truth box of
its sample, calling its distance function for each pair, once per distance threshold: `center_distance`, two small
arrays and `np.linalg.norm`, ~4 us a call. For the busiest class of 1000 random-weight awml-base frames (55
detections against 9 ground-truth boxes a frame) that was 2.5 of the 3.2 s one threshold's `accumulate` took on the
CPU machine, and a sweep's metrics wait for its longest part after the last frame.

A distance depends on its two boxes alone. So each frame's distances are worked out once, by the devkit's own
`center_distance` on the very floats the devkit's boxes are made of (`eval/devkit_boxes.py`: the box's x and y as
float64), while the sweep's frames still run (`sweep/metrics.py`, in the metrics' process pool), and `accumulate` is
given `looked_up`, which reads them back: the same numbers in the same comparisons, the matching ~6x faster.

Rows are per sample and class: `(detections of the class, ground-truth boxes of the class)` in the order
`devkit.of_class` keeps, before the devkit's range and point-count filters (`tag` marks each box with its place).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

class _At:
    """What `center_distance` reads of a box: its translation (x and y are all it uses)."""

    __slots__ = ("translation",)

    def __init__(self, x: float, y: float):
        self.translation = [x, y]


def _center_distance():
    """The devkit's `center_distance`, imported through `imports.load` (the devkit's OpenCV edits `sys.path`); a
    missing devkit raises ImportError, and the devkit's evaluation then says so in its own words."""
    from cp_debug.imports import load

    return load("nuscenes.eval.common.utils").center_distance


def rows(gt_xy: np.ndarray, det_xy: np.ndarray, distance=None) -> np.ndarray:
    """(detections, ground-truth boxes) center distances, each `center_distance` of the two boxes' float64 x and y
    (`gt_xy`, `det_xy`: (n, 2)) exactly as the devkit's boxes hold them."""
    distance = distance or _center_distance()
    gts = [_At(x, y) for x, y in np.asarray(gt_xy, dtype=np.float64).tolist()]
    out = np.empty((len(det_xy), len(gts)), dtype=np.float64)
    for i, (x, y) in enumerate(np.asarray(det_xy, dtype=np.float64).tolist()):
        det = _At(x, y)
        out[i] = [distance(g, det) for g in gts]
    return out


def sample_rows(gt_xy: np.ndarray, gt_labels: np.ndarray, det_xy: np.ndarray, det_labels: np.ndarray, n_classes: int,
                distance=None) -> dict[int, np.ndarray]:
    """class -> `rows` of one sample (its boxes' x and y, (n, 2), and labels), for each class with both ground truth
    and detections in it."""
    out = {}
    for c in range(n_classes):
        g, d = gt_labels == c, det_labels == c
        if g.any() and d.any():
            out[c] = rows(gt_xy[g], det_xy[d], distance)
    return out


def sample_input(gt, dets: Mapping[str, object]) -> tuple:
    """What `frames_rows` needs of a frame: (ground truth's x and y, labels), lane -> (detections' x and y,
    labels), from its `SampleBoxes` (float64, the values the devkit's boxes are made of)."""
    return (gt.boxes[:, :2], gt.labels), {lane: (d.boxes[:, :2], d.labels) for lane, d in dets.items()}


def frames_rows(frames: Sequence[tuple[str, tuple, Mapping[str, tuple]]], n_classes: int
                ) -> dict[str, dict[str, dict[int, np.ndarray]]]:
    """lane -> token -> `sample_rows` of each (token, *`sample_input`) of `frames`: a batch of a sweep's frames,
    worked out in one of the metrics' processes."""
    distance = _center_distance()
    out: dict[str, dict[str, dict[int, np.ndarray]]] = {}
    for token, (gt_xy, gt_labels), lanes in frames:
        for lane, (det_xy, det_labels) in lanes.items():
            out.setdefault(lane, {})[token] = sample_rows(gt_xy, gt_labels, det_xy, det_labels, n_classes, distance)
    return out


def tag(gt, pred, tokens: Sequence[str], given: Mapping[str, np.ndarray]) -> None:
    """Each box of the devkit's `EvalBoxes` `gt` and `pred` (one class's, before filtering) marked for `looked_up`:
    a ground-truth box with its place among its sample's boxes of the class (`_cpdebug_place`), a detection with its
    distances to them (`_cpdebug_distances`: `given[token]`, worked out here with `center_distance` where a sample
    has none)."""
    distance = None
    for token in tokens:
        gts, dets = gt[token], pred[token]
        for j, box in enumerate(gts):
            box._cpdebug_place = j
        if not dets:
            continue
        row = given.get(token)
        if row is None or row.shape != (len(dets), len(gts)):
            distance = distance or _center_distance()
            row = rows([b.translation[:2] for b in gts], [b.translation[:2] for b in dets], distance) \
                if gts else np.zeros((len(dets), 0))
        for box, values in zip(dets, row.tolist()):
            box._cpdebug_distances = values


def looked_up(gt_box, pred_box) -> float:
    """`center_distance(gt_box, pred_box)` as `tag` left it on the two boxes."""
    return pred_box._cpdebug_distances[gt_box._cpdebug_place]

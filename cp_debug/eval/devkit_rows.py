"""The devkit's center distances worked out once for every threshold of its `accumulate`, and looked up inside it.

nuscenes-devkit's `accumulate` walks every detection of a class in score order against every ground-truth box of
its sample, calling its distance function for each pair, once per distance threshold: `center_distance`, two small
arrays and `np.linalg.norm`, ~4 us a call. A distance depends on its two boxes alone, so where a class is evaluated
at its four thresholds in one process (`devkit.evaluate_class`: `cpdebug eval`, a sweep on a host without the
metrics' pool) each pair's is worked out once, by the devkit's own `center_distance` on the very boxes `accumulate`
reads (`tag`), and `accumulate` is given `looked_up`, which reads them back: the same numbers in the same comparisons
(1.76x / 1.97x faster on the CPU machine). A sweep with the pool matches frame by frame instead (`devkit_stream.py`).
"""

from __future__ import annotations

from typing import Callable, Sequence


def tag(gt, pred, tokens: Sequence[str], distance: Callable) -> None:
    """Each box of the devkit's `EvalBoxes` `gt` and `pred` (one class's, before filtering) marked for `looked_up`:
    a ground-truth box with its place among its sample's boxes of the class (`_cpdebug_place`), a detection with its
    distances to them in that order (`_cpdebug_distances`), each `distance` (the devkit's `center_distance`)."""
    for token in tokens:
        gts = gt[token]
        for j, box in enumerate(gts):
            box._cpdebug_place = j
        for box in pred[token]:
            box._cpdebug_distances = [distance(g, box) for g in gts]


def looked_up(gt_box, pred_box) -> float:
    """`center_distance(gt_box, pred_box)` as `tag` left it on the two boxes."""
    return pred_box._cpdebug_distances[gt_box._cpdebug_place]

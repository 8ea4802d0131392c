"""The devkit's evaluation of a sweep's lanes in the metrics' process pool, cut into parts the pool can share.

nuscenes-devkit's `accumulate` is pure Python: one call per class and distance threshold, each walking every
detection against its sample's ground truth, and its `DetectionBox`es are made one by one. Evaluated a class a
process, the class with the most detections was the metrics' tail: 12.4 s of awml-base's bus class (55 random-weight
detections and 9 ground-truth boxes a frame, 1000 frames) on the CPU machine, against 3.2 s for car. A class's four
thresholds are independent `accumulate` calls, so a large class is evaluated in two or four parts (each makes the
class's boxes again: ~11 us a box, `eval/devkit_boxes.py`), as many as shorten the longest part while the pool's
total work shared out stays under it (`plan`); `eval.devkit.merge_parts` puts a class back together and `combine`
adds the classes up, the same figures as `evaluate` of the lane in one process. The parts go out longest first,
before the bootstrap's pairs.
"""

from __future__ import annotations

import pickle
from typing import Mapping, Sequence

import numpy as np

from cp_debug.eval.boxes import SampleBoxes
from cp_debug.eval.devkit import DIST_THS

# seconds, measured on the CPU machine (Intel Xeon, nuscenes-devkit 1.2.0): making one box (`eval/devkit_boxes.py`:
# 40 us through the devkit's own constructor, ~0.27 of that since), and one detection's distance to one ground-truth
# box of its sample inside `accumulate` (per threshold); only their ratio matters
BOX_SECONDS = 11e-6
PAIR_SECONDS = 6.7e-6
LOOKED_UP_SECONDS = 0.8e-6  # a pair whose distance was worked out ahead (`eval/devkit_rows.py`)
SPLITS = {k: tuple(DIST_THS[i:i + len(DIST_THS) // k] for i in range(0, len(DIST_THS), len(DIST_THS) // k))
          for k in (1, 2, 4)}  # a class in 1, 2 or 4 parts: its thresholds (0.5, 1, 2, 4 m) shared out


def class_costs(gt: Mapping[str, SampleBoxes], dets: Mapping[str, SampleBoxes], n_classes: int,
                pair_seconds: float = PAIR_SECONDS) -> list[tuple[float, float]]:
    """Per class: (seconds to make its boxes, seconds of one threshold's `accumulate`), estimated from the counts."""
    g = np.zeros(n_classes)
    d = np.zeros(n_classes)
    pairs = np.zeros(n_classes)
    for token, truth in gt.items():
        gc = np.bincount(truth.labels, minlength=n_classes)[:n_classes]
        found = dets.get(token)
        dc = np.bincount(found.labels, minlength=n_classes)[:n_classes] if found is not None else np.zeros(n_classes)
        g, d, pairs = g + gc, d + dc, pairs + gc * dc
    return [(BOX_SECONDS * (g[c] + d[c]), pair_seconds * pairs[c]) for c in range(n_classes)]


def plan(costs: Sequence[tuple[float, float]], workers: int) -> list[int]:
    """Into how many parts (1, 2 or 4) to cut each class of `costs` (`class_costs`, every lane's classes in one
    list) for a pool of `workers` processes: the class whose part is the longest is cut in two (then four) while
    the pool's total work shared out stays under that part — cutting costs its boxes made once more a part."""
    k = [1] * len(costs)

    def part(i: int) -> float:
        make, one = costs[i]
        return make + 4 * one / k[i]

    def shared() -> float:
        return sum(k[i] * costs[i][0] + 4 * costs[i][1] for i in range(len(costs))) / max(1, workers)

    while costs:
        worst = max(range(len(costs)), key=part)
        longest = part(worst)
        if k[worst] == 4:
            break
        k[worst] *= 2
        if shared() >= longest:
            k[worst] //= 2
            break
    return k


def submit_lanes(processes, workers: int, lanes: Mapping[str, tuple], names: tuple, reach: float,
                 rows: Mapping[str, Mapping] | None = None) -> dict:
    """Every lane's classes into the pool, cut as `plan` says, longest part first. `lanes`: lane -> (ground truth,
    detections), inputs `check_inputs` passed; `rows`: lane -> token -> class -> the center distances worked out
    ahead (`eval/devkit_rows.py`), or None. Returns lane -> `LaneParts`."""
    rows = rows or {}
    costs = {lane: class_costs(gt, dets, len(names), LOOKED_UP_SECONDS if lane in rows else PAIR_SECONDS)
             for lane, (gt, dets) in lanes.items()}
    order = [(lane, c) for lane in lanes for c in range(len(names))]
    cuts = dict(zip(order, plan([costs[lane][c] for lane, c in order], workers)))

    def class_rows(lane: str, c: int) -> dict | None:
        if lane not in rows:
            return None
        return {token: by_class[c] for token, by_class in rows[lane].items() if c in by_class}

    laid = {lane: tuple(_laid(side) for side in sides) for lane, sides in lanes.items()}
    blobs = {(lane, c): pickle.dumps((*(_of_class(side, c) for side in laid[lane]), class_rows(lane, c)),
                                     pickle.HIGHEST_PROTOCOL)
             for lane, c in order}  # each part is sent its class's boxes (and distances) only, as a few arrays
    jobs = []
    for (lane, c), k in cuts.items():
        make, one = costs[lane][c]
        jobs += [(make + len(ths) * one, lane, c, ths) for ths in SPLITS[k]]
    futures: dict = {lane: {name: [] for name in names} for lane in lanes}
    for _, lane, c, ths in sorted(jobs, key=lambda job: -job[0]):
        futures[lane][names[c]].append(processes.submit(class_part, blobs[lane, c], names, names[c], reach, ths))
    return {lane: LaneParts(futures[lane], names, len(lanes[lane][0]), reach) for lane in lanes}


def class_part(blob: bytes, names: tuple, name: str, reach: float, thresholds: tuple):
    """In a pool's process: class `name`'s part of one lane (`evaluate_class` at `thresholds`), from the ground truth
    and the detections of that class alone (`of_class`)."""
    from cp_debug.eval.devkit import evaluate_class

    gt, dets, rows = pickle.loads(blob)
    return evaluate_class(_samples(gt), _samples(dets), names, name, class_range=reach, thresholds=thresholds,
                          rows=rows)


def _laid(side: Mapping[str, SampleBoxes]) -> tuple:
    """One side's samples (ground truth or a lane's detections) laid end to end: (tokens, each box's sample, boxes,
    labels, scores or None, point counts, whether each sample has them). Cut by class (`_of_class`) and sent as a
    few arrays, not a thousand `SampleBoxes` pickled one by one (0.8 s of a 1000-frame sweep's metrics)."""
    tokens = list(side)
    values = list(side.values())
    owner = np.repeat(np.arange(len(values)), [len(sb) for sb in values])
    boxes = np.concatenate([sb.boxes for sb in values]) if values else np.zeros((0, 9))
    labels = np.concatenate([sb.labels for sb in values]) if values else np.zeros(0, np.int64)
    scored = bool(values) and all(sb.scores is not None for sb in values)
    scores = np.concatenate([sb.scores for sb in values]) if scored else None
    has_points = np.array([sb.num_points is not None for sb in values], dtype=bool)
    points = np.concatenate([sb.num_points if sb.num_points is not None else np.zeros(len(sb), np.int64)
                             for sb in values]) if values else np.zeros(0, np.int64)
    return tokens, owner, boxes, labels, scores, points, has_points


def _of_class(laid: tuple, c: int) -> tuple:
    """`_laid` of class `c`'s boxes alone (what `eval.devkit.of_class` keeps), each sample's count beside them."""
    tokens, owner, boxes, labels, scores, points, has_points = laid
    keep = labels == c
    counts = np.bincount(owner[keep], minlength=len(tokens))
    return (tokens, counts, boxes[keep], labels[keep], None if scores is None else scores[keep], points[keep],
            has_points)


def _samples(packed: tuple) -> dict[str, SampleBoxes]:
    """token -> `SampleBoxes` again, from `_of_class` (in the part's process)."""
    tokens, counts, boxes, labels, scores, points, has_points = packed
    cuts = np.cumsum(counts)[:-1]
    split = lambda a: np.split(a, cuts) if len(tokens) else []  # noqa: E731
    per_scores = split(scores) if scores is not None else [None] * len(tokens)
    return {token: SampleBoxes(b, lab, sc, p if has else None)
            for token, b, lab, sc, p, has in zip(tokens, split(boxes), split(labels), per_scores, split(points),
                                                 has_points)}


class LaneParts:
    """One lane's devkit figures being worked out part by part in the pool; `result()` adds them up (or the lane's
    one-line reason where the devkit refuses it)."""

    def __init__(self, parts: dict, names: tuple, num_samples: int, reach: float):
        self.parts, self.names, self.num_samples, self.reach = parts, names, num_samples, reach

    def result(self) -> dict:
        from cp_debug.errors import CpDebugError
        from cp_debug.eval.devkit import combine, merge_parts

        try:
            done = {c: merge_parts([f.result() for f in futs]) for c, futs in self.parts.items()}
            return combine(done, self.names, self.num_samples, self.reach).to_json()
        except CpDebugError as err:
            return lane_error(err)


def lane_error(err: Exception) -> dict:
    """A lane's devkit entry where the devkit cannot evaluate it: the reason's first line."""
    return {"error": str(err).splitlines()[0]}

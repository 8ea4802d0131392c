"""The devkit's evaluation of a sweep's lanes, worked out frame by frame in the metrics' process pool.

nuscenes-devkit's `accumulate` is pure Python and needs every frame: called per class and threshold after the last
frame, its busiest call was the metrics' tail (12.4 s of awml-base's bus class at 1000 frames on the CPU machine
when evaluated a class a process; 1.0-1.8 s once cut by threshold and its distances worked out ahead; 14.3 s of a
6000-frame sweep's wall on four H200s, issue 87). Its matching is decided within each sample, so each returned
frame is matched now, in the pool, a batch of frames a task (`frames_matches`: `eval/devkit_stream.sample_matches`
of every lane); after the last frame each lane's classes are summed up from them (`evaluate_lanes`:
`devkit_stream.accumulated`, a sort and a few numpy passes a class), the same figures as `devkit.evaluate`.
A frame that came back without its matches (a resumed sweep's) is matched then, in the pool.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def frames_matches(frames: Sequence[tuple], names: tuple, reach: float) -> dict[str, dict[str, dict | None]]:
    """In a pool's process: lane -> token -> `sample_matches` of each (token, ground truth, lane -> detections) of
    `frames`, or None for a sample the devkit refuses (matched again after the last frame, where what is wrong is
    said: `devkit.check_inputs`, or the devkit's own assertion)."""
    from cp_debug.eval.devkit_stream import sample_matches

    out: dict[str, dict[str, dict | None]] = {}
    for token, gt, lanes in frames:
        for lane, dets in lanes.items():
            try:
                matched = sample_matches(token, gt, dets, names, reach)
            except Exception:  # noqa: BLE001 - said after the last frame, where the lane's inputs are checked
                matched = None
            out.setdefault(lane, {})[token] = matched
    return out


def evaluate_lanes(processes, workers: int, lanes: Mapping[str, tuple], names: tuple, reach: float,
                   ahead: Mapping[str, Mapping] | None = None) -> dict:
    """lane -> a future of its devkit entry (`DetectionEvaluation.to_json()`, or its one-line reason). `lanes`: lane
    -> (ground truth, detections), inputs `check_inputs` passed; `ahead`: lane -> token -> the matches worked out
    as the frames came (`MetricsAhead.matches`). What is missing is matched in the pool now; the lanes are then summed
    up on a thread of their own, beside the bootstrap."""
    from concurrent.futures import ThreadPoolExecutor

    ahead = ahead or {}
    missing: dict[str, dict] = {}
    for lane, (gt, dets) in lanes.items():
        done = ahead.get(lane, {})
        for token in gt:
            if done.get(token) is None:
                missing.setdefault(token, {})[lane] = dets[token]
    todo = [(token, lanes[next(iter(by_lane))][0][token], by_lane) for token, by_lane in missing.items()]
    size = max(1, math.ceil(len(todo) / max(1, workers)))
    futures = [processes.submit(frames_matches, todo[i:i + size], names, reach) for i in range(0, len(todo), size)]
    summing = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-devkit")
    try:
        return {lane: summing.submit(_lane, lane, sides, names, reach, ahead.get(lane, {}), futures)
                for lane, sides in lanes.items()}
    finally:
        summing.shutdown(wait=False)


def _lane(lane: str, sides: tuple, names: tuple, reach: float, ahead: Mapping, late: list) -> dict:
    """One lane's devkit entry from its samples' matches (`ahead`, then those of the `late` futures); a sample the
    pool could not match is matched here, so that the devkit's own error says why."""
    from cp_debug.errors import CpDebugError
    from cp_debug.eval.devkit import combine
    from cp_debug.eval.devkit_stream import class_of_samples, sample_matches

    gt, dets = sides
    matches = dict(ahead)
    for future in late:
        matches.update(future.result().get(lane, {}))
    try:
        by_sample = []
        for token in sorted(gt):
            found = matches.get(token)
            by_sample.append(found if found is not None else sample_matches(token, gt[token], dets[token], names,
                                                                            reach))
        parts = {name: class_of_samples(by_sample, c, name) for c, name in enumerate(names)}
        return combine(parts, names, len(gt), reach).to_json()
    except CpDebugError as err:
        return lane_error(err)


def lane_error(err: Exception) -> dict:
    """A lane's devkit entry where the devkit cannot evaluate it: the reason's first line."""
    return {"error": str(err).splitlines()[0]}

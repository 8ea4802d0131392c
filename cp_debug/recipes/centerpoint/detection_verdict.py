"""Does a candidate's divergence change the detections on the bisected scan? The end of a CenterPoint bisect.

The reference's and the candidate's head maps (the last stage's outputs) are decoded as the deployment decodes
them (sigmoid, boxes, circle NMS, score threshold: `models/centerpoint/decode.py`) and matched box to box
(`compare_detections.py`). "Changed" means a box lost or added, or a matched box moved, rescored or turned by
1e-3 or more: `compare_detections.unchanged`, the same test as `cpdebug eval`'s "no box changed" diagnosis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BoxVerdict:
    """The candidate's boxes against the reference's on the bisected scan (a `bisect.subject.DetectionVerdict`)."""

    reference_boxes: int
    candidate_boxes: int
    matched: int
    lost: int
    added: int
    max_centre_shift_m: float
    max_abs_score_change: float
    max_yaw_change_rad: float
    changed: bool
    summary: str

    def to_json(self) -> dict:
        return asdict(self)


def detection_verdict(cfg) -> Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], BoxVerdict]:
    """A `Subject.detection_verdict` for preset `cfg`."""

    def verdict(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> BoxVerdict:
        from cp_debug.models.centerpoint.decode import decode
        from cp_debug.recipes.centerpoint.compare_detections import compare_detections

        a, b = decode(reference, cfg), decode(candidate, cfg)
        d = compare_detections(a, b)
        lost, added = len(d.unmatched_a), len(d.unmatched_b)
        changed = not d.unchanged
        if not changed:
            summary = (f"no box changed on this scan ({d.num_matched} matched, none moved, rescored or turned by "
                       "1e-3): the divergence is harmless here")
        else:
            summary = (f"{d.num_matched} of {d.num_a} reference boxes matched, {lost} lost, {added} added; "
                       f"max centre shift {d.max_centre_dist:.3g} m, max |Δscore| {d.max_score_diff:.3g}, "
                       f"max Δyaw {d.max_yaw_diff:.3g} rad")
        return BoxVerdict(d.num_a, d.num_b, d.num_matched, lost, added, d.max_centre_dist, d.max_score_diff,
                          d.max_yaw_diff, changed, summary)

    return verdict

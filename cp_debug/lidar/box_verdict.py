"""Does a candidate's divergence change the detections? Two sets of boxes, however a recipe decoded them, matched box
to box (`lidar/compare_detections.py`) into one `BoxVerdict`: the end of a bisect for every detector recipe.

"Changed" means a box lost or added, or a matched box moved, rescored or turned by 1e-3 or more:
`compare_detections.unchanged`, the same test as `cpdebug eval`'s "no box changed" diagnosis. Judged
(`BoxVerdict.judge`) by `compare.noise.judge_boxes`: one judgement of the boxes, each turn weighed by how well the
reference defines that yaw. What is particular to a recipe (its decode, where it cuts boxes by score, its grid) is
the recipe's (`box_grid` reads the grid of any config with a point cloud range, voxel size and
out_size_factor): CenterPoint's in `centerpoint/detection_verdict.py`, TransFusion-L's in `transfusion/verdict.py`.
`judge_boxes_of`: the same judgement on a frame's figures, as sweep and eval judge every recipe's frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.boxes import Detections


@dataclass(frozen=True)
class BoxVerdict:
    """The candidate's boxes against the reference's on the bisected scan (a
    `bisect.subjects.subject.DetectionVerdict`)."""

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
    lost_scores: tuple[float, ...] = ()  # the reference's scores of the boxes lost
    added_scores: tuple[float, ...] = ()  # the candidate's scores of the boxes added
    score_cuts: tuple[float, ...] = (0.1,)  # where boxes are cut by score (compare/noise.score_cuts)
    cell_m: float = 0.0  # the output grid's cell (m): how far a centre may move by the precision's rounding
    extent_m: float = 0.0  # the largest |x|, |y| of the point cloud range: float32's rounding of a centre
    yaw_turns: tuple = ()  # compare.noise.YawTurn: the turns that decide, with their yaw's conditioning
    graph_span_m: float = 0.0  # the span of centre coordinates the graph itself computes (compare.noise.judge_boxes)
    box_flips: tuple = ()  # compare.noise.BoxFlip: lost/added boxes an NMS or class-remapping decision made

    def to_json(self) -> dict:
        d = asdict(self)
        d["lost_scores"], d["added_scores"] = list(self.lost_scores), list(self.added_scores)
        d["score_cuts"] = list(self.score_cuts)
        d["yaw_turns"] = [t.to_json() for t in self.yaw_turns]
        d["box_flips"] = [f.to_json() for f in self.box_flips]
        return d

    def judge(self, precision: str):
        """These boxes judged by `precision`'s noise (compare/noise.py): lost/added at the score threshold, or
        beyond what the precision explains."""
        from cp_debug.compare.noise import judge_boxes

        return judge_boxes(precision, lost_scores=self.lost_scores, added_scores=self.added_scores,
                           cuts=self.score_cuts, max_centre_shift=self.max_centre_shift_m,
                           max_score_change=self.max_abs_score_change, max_yaw_change=self.max_yaw_change_rad,
                           cell_m=self.cell_m, extent_m=self.extent_m, yaw_turns=self.yaw_turns,
                           graph_span_m=self.graph_span_m, box_flips=self.box_flips)


def box_grid(cfg) -> tuple[float, float]:
    """(cell_m, extent_m) of `cfg`: its output grid's cell (how far a centre may move by a precision's rounding) and
    the largest |x| or |y| a box centre can take, its point cloud range (float32's rounding of a centre), in metres."""
    r = cfg.point_cloud_range
    return (float(cfg.voxel_size[0]) * float(cfg.out_size_factor),
            float(max(abs(r[0]), abs(r[1]), abs(r[3]), abs(r[4]))))


def box_verdict(a: "Detections", b: "Detections", *, score_threshold: float, cap: int | None, cell_m: float,
                extent_m: float, graph_span_m: float = 0.0, box_flips: tuple = ()) -> BoxVerdict:
    """The reference's boxes `a` against the candidate's `b`: `score_threshold` and `cap` (the most boxes a side
    keeps, None: no cap) say where boxes are cut by score (`compare.noise.score_cuts`); `cell_m`, `extent_m`,
    `graph_span_m`, `box_flips` as in `BoxVerdict`."""
    import numpy as np

    from cp_debug.compare.noise import score_cuts
    from cp_debug.lidar.compare_detections import compare_detections

    d = compare_detections(a, b)
    lost, added = len(d.unmatched_a), len(d.unmatched_b)
    changed = not d.unchanged
    if not changed:
        summary = (f"no box changed on this scan ({d.num_matched} matched, none moved, rescored or turned by "
                   "1e-3): whatever the tensors differ by does not reach the detections here")
    else:
        summary = (f"{d.num_matched} of {d.num_a} reference boxes matched, {lost} lost, {added} added; "
                   f"max centre shift {d.max_centre_dist:.3g} m, max |Δscore| {d.max_score_diff:.3g}, "
                   f"max Δyaw {d.max_yaw_diff:.3g} rad")
    return BoxVerdict(d.num_a, d.num_b, d.num_matched, lost, added, d.max_centre_dist, d.max_score_diff,
                      d.max_yaw_diff, changed, summary, tuple(float(a.scores[i]) for i in d.unmatched_a),
                      tuple(float(b.scores[i]) for i in d.unmatched_b),
                      score_cuts(score_threshold, cap, np.asarray(a.scores), np.asarray(b.scores)),
                      cell_m, extent_m, d.yaw_turns, graph_span_m, tuple(box_flips))


def judge_boxes_of(cfg, precision: str, **figures):
    """`compare.noise.judge_boxes` for boxes decoded by `cfg` (its grid's cell and extent): what sweep and eval call
    with a frame's figures (lost/added scores, cuts, centre shift, score and yaw change)."""
    from cp_debug.compare.noise import judge_boxes

    cell, extent = box_grid(cfg)
    return judge_boxes(precision, cell_m=cell, extent_m=extent, **figures)

"""Judging one frame: each candidate's probes compared with the reference's (`TensorDiff` scalars, on the device
where both are tensors), its boxes matched to the reference's, and the candidate flagged against its precision's
noise (mode "model") or the element-wise tolerance (mode "fixed")."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from cp_debug.compare.diff import BROKEN
from cp_debug.sweep.records import DISTANCE_BUCKETS, CandidateFrame, DetectionDelta, ProbeStat, SweepSettings, bucket_of


def compare_values(items: list[tuple]) -> list:
    """The `TensorDiff` of each (name, ref, test, tol) probe: where both values are torch tensors (a CUDA lane's), on
    their device in one fused pass each (`compare/fused_diff.py`, Triton, where it runs), the figures of all of them
    reaching the host in one copy; a tensor beside a numpy array meets it on the host."""
    from cp_debug.compare.device_diff import diff_many, is_tensor
    from cp_debug.compare.diff import TensorDiff

    on_device = [k for k, (_, ref, test, _) in enumerate(items) if is_tensor(ref) and is_tensor(test)]
    out: list = [None] * len(items)
    for k, d in zip(on_device, diff_many([items[k] for k in on_device], one_pass=True)):
        out[k] = d
    for k, (name, ref, test, tol) in enumerate(items):
        if out[k] is None:
            host = [v.detach().cpu().numpy() if is_tensor(v) else v for v in (ref, test)]
            out[k] = TensorDiff.from_arrays(name, host[0], host[1], tol)
    return out


def tolerance_of(precision: str, settings: SweepSettings):
    """The element-wise tolerance of a candidate of `precision` (as bisect's: --atol/--rtol over the default)."""
    from cp_debug.compare.diff import Tolerance, default_tolerance

    tol = default_tolerance(precision)
    return Tolerance(tol.atol if settings.atol is None else settings.atol,
                     tol.rtol if settings.rtol is None else settings.rtol, tol.max_share)


def probe_stat(d, order: int, precision: str, amax: float | None, mode: str) -> ProbeStat:
    """A probe's scalars; with mode "model" its status says whether it lies beyond its precision's noise."""
    from cp_debug.compare import noise

    j = noise.judge(d, precision, amax)
    status = noise.status_of(d, j) if mode == "model" else d.status
    return ProbeStat(d.name, order, d.rel_rmse, d.rel_max, d.cosine, d.max_abs, d.nan, d.inf, status,
                     j.expected_rel_rmse, j.noise_ratio)


def judge_frame(label: str, precision: str, stats: tuple[ProbeStat, ...], delta: DetectionDelta, cfg,
                mode: str) -> CandidateFrame:
    """One candidate on one frame: flagged (`diverged`) and its outcome on this frame alone."""
    from cp_debug.compare import noise

    bad = [p for p in stats if p.status not in ("ok", "missing")]
    if mode == "fixed":
        flagged = delta.changed or bool(bad)
        outcome = noise.Outcome.DIVERGED if flagged else noise.Outcome.WITHIN_PRECISION
        why = (f"{len(bad)} probe(s) beyond tolerance" if bad else "") + ("; boxes changed" if delta.changed else "")
        return CandidateFrame(label, stats, delta, flagged, outcome.value, why.strip("; ") or "within tolerance",
                              precision)
    boxes = judge_delta(precision, delta, cfg)
    worst = max((p for p in stats if p.status != "missing"), key=lambda p: _ratio(p), default=None)
    p = next((p for p in bad if p.status in BROKEN), None)
    if p is not None:
        what = {"nan": "NaN", "inf": "Inf"}.get(p.status, "shape mismatch")
        outcome, why = noise.Outcome.DIVERGED, f"{p.probe}: {what}"
    elif bad:
        outcome = noise.Outcome.DEGRADED
        why = f"{len(bad)} probe(s) beyond {precision}'s noise (worst {worst.probe}, {_ratio(worst):.3g}× its budget)"
    else:
        outcome = boxes.outcome
        why = (f"every probe within {precision}'s noise (worst {_ratio(worst):.2g}× its budget)" if worst else "")
    why = f"{why}; {boxes.reason}" if why else boxes.reason
    outcome = noise.worst([outcome, boxes.outcome])
    return CandidateFrame(label, stats, delta, outcome is not noise.Outcome.WITHIN_PRECISION, outcome.value, why,
                          precision)


def judge_delta(precision: str, delta: DetectionDelta, cfg):
    """The boxes of one frame judged by `precision` (compare/noise.py: at the threshold or beyond)."""
    from cp_debug.lidar.box_verdict import judge_boxes_of

    return judge_boxes_of(cfg, precision, lost_scores=delta.lost_scores, added_scores=delta.added_scores,
                          cuts=delta.score_cuts or (float(cfg.score_threshold),),
                          max_centre_shift=delta.max_centre_shift,
                          max_score_change=delta.max_score_change, max_yaw_change=delta.max_yaw_change,
                          yaw_turns=delta.yaw_turns)


def _ratio(p: ProbeStat) -> float:
    return p.noise_ratio if not math.isnan(p.noise_ratio) else 0.0


def box_lists(det) -> dict:
    """Detections as `FrameResult.boxes` holds a lane's: {"boxes", "scores", "labels"} lists."""
    return {"boxes": np.asarray(det.boxes, np.float64).tolist(), "scores": np.asarray(det.scores, np.float64).tolist(),
            "labels": np.asarray(det.labels).astype(int).tolist()}


def detection_delta(ref, cand, class_names: Sequence[str], max_dist: float, cfg=None,
                    cut: tuple[float, int | None] | None = None, flips: int = 0) -> DetectionDelta:
    """Matched, lost and added boxes (overall, by class, by distance bucket) and the matched pairs' changes (the
    turns that decide with the reference's conditioning of each yaw); with `cut` (score threshold, cap; default
    `cfg`'s), where boxes are cut by score (the threshold, a full side's lowest score). `flips`: the decided glue's
    choices the candidate made otherwise."""
    from cp_debug.compare.noise import score_cuts
    from cp_debug.lidar.compare_detections import compare_detections

    if cut is None and cfg is not None:
        cut = (cfg.score_threshold, cfg.post_max_size)
    d = compare_detections(ref, cand, max_dist=max_dist, class_names=tuple(class_names))
    by_class = {c: [0, 0, 0] for c in class_names}
    by_range = {name: [0, 0, 0] for _, _, name in DISTANCE_BUCKETS}

    def count(slot: int, label: int, box) -> None:
        by_class[class_names[int(label)]][slot] += 1
        by_range[bucket_of(float(box[0]), float(box[1]))][slot] += 1

    for m in d.matched:
        count(0, m.label, ref.boxes[m.index_a])
    for i in d.unmatched_a:
        count(1, ref.labels[i], ref.boxes[i])
    for i in d.unmatched_b:
        count(2, cand.labels[i], cand.boxes[i])
    return DetectionDelta(d.num_a, d.num_b, d.num_matched, len(d.unmatched_a), len(d.unmatched_b),
                          d.max_centre_dist, d.mean_centre_dist, d.max_score_diff, d.max_yaw_diff, not d.unchanged,
                          by_class, by_range, tuple(float(ref.scores[i]) for i in d.unmatched_a),
                          tuple(float(cand.scores[i]) for i in d.unmatched_b),
                          () if cut is None else score_cuts(cut[0], cut[1], np.asarray(ref.scores),
                                                            np.asarray(cand.scores)),
                          d.yaw_turns, int(flips))


def candidate_frame(label: str, precision: str, order: Sequence[str], missing: Sequence[str], ref_probes: dict,
                    probes: dict, settings: SweepSettings, delta: DetectionDelta, cfg, amax: dict | None = None,
                    stream=None) -> CandidateFrame:
    """One candidate on one frame: each probe of `order` compared with the reference's (on `stream`, None: the
    current one; `missing`: those the candidate cannot expose), its boxes' `delta`, judged."""
    from cp_debug.parallel import on_stream

    tol = tolerance_of(precision, settings)
    present = [name for name in order if name not in missing and name in probes and name in ref_probes]
    items = [(n, ref_probes[n], probes[n], tol) for n in present]
    diffs = dict(zip(present, on_stream(stream, compare_values, items)))
    stats = []
    for k, name in enumerate(order):
        if name not in diffs:
            stats.append(ProbeStat(name, k, math.nan, math.nan, math.nan, math.nan, 0, 0, "missing"))
            continue
        stats.append(probe_stat(diffs[name], k, precision, (amax or {}).get(name), settings.tolerance_mode))
    return judge_frame(label, precision, tuple(stats), delta, cfg, settings.tolerance_mode)


def truth_lists(gt) -> dict | None:
    """A frame's ground truth as `FrameResult.gt` holds it (None where it has none)."""
    if gt is None:
        return None
    return {"boxes": gt.boxes.tolist(), "labels": gt.labels.astype(int).tolist(),
            "num_points": None if gt.num_points is None else gt.num_points.astype(int).tolist()}

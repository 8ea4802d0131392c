"""Diagnoses at the detection level: what a candidate's boxes say about how its deployment went wrong.

Each rule looks at the candidate's boxes against the reference's on the same scans and, where it fires, gives
one sentence and the evidence it rests on (counts, score quantiles, a median offset). The rules cover the
failures deployment reports keep finding: heatmap logits read without sigmoid (scores outside [0, 1], or
hardly any boxes), a constant shift (frame or voxel offset), a box-encoding convention (dx/dy swapped, yaw off
by pi/2 or pi), and the good case: no box changed, so the divergence is harmless at this score threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from cp_debug.eval.boxes import SampleBoxes
from cp_debug.eval.detection_diff import CandidateDiff

_SIGMOID_TWICE = (0.5, 1.0 / (1.0 + math.exp(-1.0)))  # sigmoid(sigmoid(x)) lies in [0.5, 0.731]


@dataclass(frozen=True)
class Diagnosis:
    # logits | too_few | sigmoid_twice | offset | size_swap | yaw_offset | unchanged | many_extra | threshold | absent
    kind: str
    message: str
    evidence: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"kind": self.kind, "message": self.message, "evidence": self.evidence}


def _scores(dets: Mapping[str, SampleBoxes]) -> np.ndarray:
    parts = [sb.scores for sb in dets.values() if sb.scores is not None and len(sb)]
    return np.concatenate(parts) if parts else np.zeros((0,))


def _quantiles(s: np.ndarray) -> dict:
    if not s.size:
        return {"count": 0}
    q = np.quantile(s, [0.0, 0.1, 0.5, 0.9, 1.0])
    return {"count": int(s.size), "min": round(float(q[0]), 4), "p10": round(float(q[1]), 4),
            "median": round(float(q[2]), 4), "p90": round(float(q[3]), 4), "max": round(float(q[4]), 4),
            "negative_fraction": round(float((s < 0).mean()), 3)}


def _score_rules(ref: Mapping[str, SampleBoxes], cand: Mapping[str, SampleBoxes]) -> list[Diagnosis]:
    out = []
    rs, cs = _scores(ref), _scores(cand)
    ev = {"reference_boxes": int(rs.size), "candidate_boxes": int(cs.size), "candidate_scores": _quantiles(cs)}
    if cs.size and (cs.min() < 0.0 or cs.max() > 1.0):
        out.append(Diagnosis("logits", f"scores outside [0, 1] (min {cs.min():.3g}, max {cs.max():.3g}, "
                                       f"{(cs < 0).mean():.0%} negative): heatmap logits without sigmoid?", ev))
    elif rs.size >= 10 and cs.size <= 0.1 * rs.size:
        out.append(Diagnosis("too_few", f"{cs.size} candidate boxes where the reference has {rs.size}: heatmap "
                                        "logits without sigmoid? (logits rarely pass a probability threshold) — "
                                        "check the heatmap's score distribution and the score threshold", ev))
    elif cs.size >= 10 and _SIGMOID_TWICE[0] <= cs.min() and cs.max() <= _SIGMOID_TWICE[1] + 1e-6:
        out.append(Diagnosis("sigmoid_twice", f"every score lies in [0.5, 0.731] ({cs.size} boxes): sigmoid "
                                              "applied twice?", ev))
    return out


def _nearest_offsets(ref: Mapping[str, SampleBoxes], cand: Mapping[str, SampleBoxes], radius: float) -> np.ndarray:
    """(dx, dy) from each reference box to the nearest candidate box of its class within `radius`."""
    rows = []
    for token, a in ref.items():
        b = cand.get(token)
        if b is None or not len(b):
            continue
        for i in range(len(a)):
            same = np.nonzero(b.labels == a.labels[i])[0]
            if not same.size:
                continue
            d = b.boxes[same, :2] - a.boxes[i, :2]
            j = int(np.argmin(np.hypot(d[:, 0], d[:, 1])))
            if np.hypot(*d[j]) <= radius:
                rows.append(d[j])
    return np.asarray(rows, np.float64).reshape(-1, 2)


def _offset_rule(ref, cand, voxel_size: Sequence[float] | None, out_size_factor: int) -> list[Diagnosis]:
    d = _nearest_offsets(ref, cand, radius=10.0)
    if len(d) < 5:
        return []
    med = np.median(d, axis=0)
    mad = np.median(np.abs(d - med), axis=0)
    norm = float(np.hypot(*med))
    if norm < 0.2 or float(mad.max()) > max(0.1, 0.25 * norm):
        return []
    ev = {"pairs": int(len(d)), "median_dx": round(float(med[0]), 4), "median_dy": round(float(med[1]), 4),
          "mad_dx": round(float(mad[0]), 4), "mad_dy": round(float(mad[1]), 4)}
    hint = ""
    if voxel_size is not None:
        vx, vy = float(voxel_size[0]), float(voxel_size[1])
        ev.update(voxel=[vx, vy], output_cell=[vx * out_size_factor, vy * out_size_factor])
        for name, (ux, uy) in (("half a voxel", (vx / 2, vy / 2)), ("one voxel", (vx, vy)),
                               ("one output cell", (vx * out_size_factor, vy * out_size_factor))):
            if any(abs(abs(m) - u) < 0.15 * u for m, u in zip(med, (ux, uy))):
                hint = f" ({name} is {ux:g} x {uy:g} m)"
                break
    return [Diagnosis("offset", f"boxes shifted by a constant ({med[0]:+.3f}, {med[1]:+.3f}) m over {len(d)} boxes: "
                                f"coordinate frame or voxel offset?{hint}", ev)]


def _encoding_rules(diff: CandidateDiff) -> list[Diagnosis]:
    p = diff.pairs
    if len(p.labels) < 5:
        return []
    out = []
    lr, wr, lc, wc = p.ref_boxes[:, 3], p.ref_boxes[:, 4], p.cand_boxes[:, 3], p.cand_boxes[:, 4]
    elongated = lr > 1.3 * wr
    direct = np.abs(lc - lr) + np.abs(wc - wr)
    swapped = np.abs(lc - wr) + np.abs(wc - lr)
    is_swap = elongated & (swapped < 0.5 * direct) & (direct > 0.3)
    dyaw = np.abs((p.cand_boxes[:, 6] - p.ref_boxes[:, 6] + np.pi) % (2 * np.pi) - np.pi)
    quarter = np.abs(dyaw - np.pi / 2) < 0.15
    half = dyaw > np.pi - 0.15
    swap_frac = float(is_swap.sum() / max(int(elongated.sum()), 1))
    if elongated.sum() >= 3 and swap_frac > 0.5:
        both = quarter.mean() > 0.5
        msg = (f"dx/dy swapped on {is_swap.sum()} of {int(elongated.sum())} elongated matched boxes"
               + (" and yaw off by pi/2: the same footprint in another box-encoding convention (dim [w, l, h] with "
                  "yaw measured from y, as AWML's rot_y_axis_reference exports?)" if both
                  else ": box-encoding convention (dim order l, w vs w, l)?"))
        out.append(Diagnosis("size_swap", msg, {"swapped": int(is_swap.sum()), "elongated": int(elongated.sum()),
                                                "yaw_quarter_turn_fraction": round(float(quarter.mean()), 3)}))
    elif quarter.mean() > 0.5:
        out.append(Diagnosis("yaw_offset", f"yaw off by pi/2 on {quarter.sum()} of {len(dyaw)} matched boxes: "
                                           "box-encoding convention (rot = [sin, cos] vs [cos, sin])?",
                             {"quarter_turn": int(quarter.sum()), "pairs": int(len(dyaw))}))
    elif half.mean() > 0.5:
        out.append(Diagnosis("yaw_offset", f"yaw off by pi on {half.sum()} of {len(dyaw)} matched boxes: heading "
                                           "flipped (sign of the rot outputs)?",
                             {"half_turn": int(half.sum()), "pairs": int(len(dyaw))}))
    return out


def diagnose(reference: Mapping[str, SampleBoxes], candidate: Mapping[str, SampleBoxes], diff: CandidateDiff, *,
             score_threshold: float, map_change: float | None = None, absent: Sequence[str] = (),
             voxel_size: Sequence[float] | None = None, out_size_factor: int = 1) -> list[Diagnosis]:
    """Every diagnosis that fires for `candidate` against `reference` (empty when nothing stands out)."""
    out: list[Diagnosis] = []
    if absent:
        out.append(Diagnosis("absent", f"{len(absent)} scene(s) have no entry in the detections (counted as no "
                                       f"boxes), e.g. {absent[0]!r}", {"absent": len(absent)}))
    out += _score_rules(reference, candidate)
    out += _offset_rule(reference, candidate, voxel_size, out_size_factor)
    out += _encoding_rules(diff)
    if out:
        return out
    t = diff.total
    ev = {"matched": t.matched, "missing": t.missing, "extra": t.extra,
          "max_centre_shift_m": round(t.max_centre_shift, 6), "max_abs_score_change": round(t.max_abs_score_change, 6)}
    if map_change is not None:
        ev["mAP_change"] = round(map_change, 6)
    if diff.unchanged:
        return [Diagnosis("unchanged", f"no box changed ({t.matched} matched, none moved or rescored by 1e-3): the "
                                       f"divergence is harmless at score threshold {score_threshold:g}", ev)]
    if t.extra > max(10, t.reference // 2):
        ev["extra_per_reference_box"] = round(t.extra / max(t.reference, 1), 3)
        out.append(Diagnosis("many_extra", f"{t.extra} boxes the reference does not have ({t.candidate} against "
                                           f"{t.reference}): scores raised broadly — the heatmap head's "
                                           "precision (INT8/FP16 range) or a lower score threshold?", ev))
    if t.missing or t.extra:
        near = diff.missing_ref_scores < score_threshold + 0.05
        if diff.missing_ref_scores.size and near.mean() >= 0.5:
            ev["missing_near_threshold"] = int(near.sum())
            out.append(Diagnosis("threshold", f"{t.missing} reference box(es) lost and {t.extra} added, "
                                              f"{int(near.sum())} of the lost within 0.05 of the score threshold "
                                              f"{score_threshold:g}: small score changes crossing it", ev))
    return out


def with_map_change(diagnoses: Sequence[Diagnosis], map_change: float) -> list[Diagnosis]:
    """`diagnoses` with the mAP change (candidate - reference) added to the evidence of an `unchanged` one
    (diagnoses run before the metrics, so that a candidate the devkit cannot score is still diagnosed)."""
    return [Diagnosis(d.kind, d.message, {**d.evidence, "mAP_change": round(map_change, 6)})
            if d.kind == "unchanged" else d for d in diagnoses]

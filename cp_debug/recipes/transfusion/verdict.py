"""TransFusion-L's box verdict (`detection_verdict`: the node's detections of each side, matched box to box), and
the boxes the node's NMS kept on one side and suppressed on the other, both sides holding their proposal: a decision
at its threshold, not a box the candidate lost or made up.

The bisect runs the candidate's decoder on the reference's proposals, so proposal q is the same cell on both sides
and its box can be followed through the node's post-process (`detections.node_kept`). Where q passes the score
threshold on both sides and is kept on one only, the other side's NMS names the box that suppressed it — a kept,
higher-scored box strictly nearer than circle_nms_dist_threshold, or the first earlier box whose BEV IoU is over
iou_nms_threshold — and the same pair's figure is read on the keeping side: e.g. IoU 0.1012 against 0.0987 at a
threshold of 0.1. `compare.noise.judge_boxes` explains such a box when the pair moved and was rescored within the
precision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from cp_debug.recipes.transfusion.detections import (AUTOWARE_LABELS, NodeBoxes, NodeParams, decode_proposals,
                                                     deployed_outputs, detections_of, footprint, node_kept,
                                                     pair_iou, remap_matrices, remapped_labels, semantic_types)

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.compare.noise import BoxFlip
    from cp_debug.lidar.box_verdict import BoxVerdict


def box_flips(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
              params: NodeParams) -> tuple["BoxFlip", ...]:
    """The NMS and class-remapping flips between two sides' deployed outputs over the same proposals (none where
    their K differ)."""
    a, b = decode_proposals(reference, params), decode_proposals(candidate, params)
    return _flips(a, b, node_kept(a, params), node_kept(b, params), params)


def _flips(a: NodeBoxes, b: NodeBoxes, stages_a: tuple, stages_b: tuple, params: NodeParams) -> tuple["BoxFlip", ...]:
    """`box_flips` of two sides already decoded and through the node's steps 2-3 (`node_kept`)."""
    if a.box.shape != b.box.shape:
        return ()
    stages = {"reference": stages_a, "candidate": stages_b}
    passed = set(stages["reference"][0].tolist()) & set(stages["candidate"][0].tolist())
    kept = {side: set(s[2].tolist()) for side, s in stages.items()}
    found = []
    for q in sorted((kept["reference"] ^ kept["candidate"]) & passed):
        dropper = "candidate" if q in kept["reference"] else "reference"
        p = b if dropper == "candidate" else a
        decided = _suppressor(p, stages[dropper], q, params)
        if decided is None:
            continue
        j, kind = decided
        figure = {side: _figure(boxes, q, j, kind, params) for side, boxes in (("reference", a), ("candidate", b))}
        shift = max(float(np.hypot(*(a.box[i, :2] - b.box[i, :2]))) for i in (q, j))
        rescored = max(abs(float(a.score[i]) - float(b.score[i])) for i in (q, j))
        threshold = params.circle_dist if kind == "distance" else float(params.iou_nms_threshold)
        from cp_debug.compare.noise import BoxFlip

        found.append(BoxFlip(kind, figure["reference"], figure["candidate"], threshold, shift, rescored,
                             params.class_names[int(p.label[q])]))
    if params.allow_remapping_by_area_matrix:
        found += _remap_flips(a, b, sorted(kept["reference"] & kept["candidate"]), params)
    return tuple(found)


def _remap_flips(a: NodeBoxes, b: NodeBoxes, both: list[int], params: NodeParams) -> list["BoxFlip"]:
    """Boxes both sides publish whose remapped label differs: the area bound between the two sides' areas."""
    from cp_debug.compare.noise import BoxFlip

    if not both:
        return []
    kept = np.asarray(both, dtype=np.int64)
    la, lb = remapped_labels(a, kept, params), remapped_labels(b, kept, params)
    _, lo, hi = remap_matrices(params)
    source = [AUTOWARE_LABELS.index(t) for t in semantic_types(a.label[kept], params)]
    found = []
    for i in np.nonzero(la != lb)[0].tolist():
        q = both[i]
        area = [float(np.float32(s.box[q, 3]) * np.float32(s.box[q, 4])) for s in (a, b)]
        bounds = [v for v in (*lo[source[i]], *hi[source[i]]) if min(area) <= v <= max(area)]
        found.append(BoxFlip("area", area[0], area[1], float(bounds[0]) if bounds else float("nan"),
                             float(np.hypot(*(a.box[q, :2] - b.box[q, :2]))), abs(float(a.score[q] - b.score[q])),
                             f"{AUTOWARE_LABELS[int(la[i])]} -> {AUTOWARE_LABELS[int(lb[i])]}", boxes=2))
    return found


def _suppressor(p: NodeBoxes, stages: tuple[np.ndarray, np.ndarray, np.ndarray], q: int,
                params: NodeParams) -> tuple[int, str] | None:
    """(the proposal that suppressed q on this side, "distance" or "IoU"), None where none is found."""
    passed, circled, _ = stages
    order = passed.tolist()
    if q not in set(circled.tolist()):  # circle NMS: a kept box earlier in score order, strictly nearer
        limit = np.float32(params.circle_dist) ** 2
        for j in circled.tolist():
            if order.index(j) >= order.index(q):
                break
            if float(((p.box[q, :2] - p.box[j, :2]) ** 2).sum()) < limit:
                return j, "distance"
        return None
    earlier = circled.tolist()
    types = dict(zip(earlier, semantic_types(p.label[circled], params)))
    for j in earlier[:earlier.index(q)]:  # IoU NMS: any earlier box (kept or not) over the threshold
        iou = pair_iou(p.box[q], p.box[j], footprint(p.box[q]), footprint(p.box[j]), (types[q], types[j]), params)
        if iou is not None and iou > params.iou_nms_threshold:
            return j, "IoU"
    return None


def _figure(p: NodeBoxes, q: int, j: int, kind: str, params: NodeParams) -> float:
    if kind == "distance":
        return float(np.hypot(*(p.box[q, :2] - p.box[j, :2])))
    types = semantic_types(p.label[[q, j]], params)
    iou = pair_iou(p.box[q], p.box[j], footprint(p.box[q]), footprint(p.box[j]), (types[0], types[1]), params)
    return float("nan") if iou is None else float(iou)


def detection_verdict(cfg, params: NodeParams | None = None) -> Callable[[dict, dict], "BoxVerdict"]:
    """A `Subject.detection_verdict` for TransFusion config `cfg`: each side's last-stage outputs → the deployed
    outputs → the node's detections (`params`, default the shipped files' post-process for `cfg`'s model), matched
    box to box (`lidar/box_verdict.py`)."""
    params = params or NodeParams().for_model(cfg)

    def verdict(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> "BoxVerdict":
        from cp_debug.lidar.box_verdict import box_grid, box_verdict

        sides = [deployed_outputs(side, params.num_proposals) for side in (reference, candidate)]
        decoded = [decode_proposals(side, params) for side in sides]
        stages = [node_kept(p, params) for p in decoded]  # each side's NMS once: its boxes and its flips
        a, b = (detections_of(p, st[2], side, params) for p, st, side in zip(decoded, stages, sides))
        cell, extent = box_grid(cfg)
        r = cfg.point_cloud_range  # the head adds each query's cell position (0 … the grid's width) in the graph
        return box_verdict(a, b, score_threshold=params.score_cut, cap=params.num_proposals, cell_m=cell,
                           extent_m=extent, graph_span_m=float(max(r[3] - r[0], r[4] - r[1])),
                           box_flips=_flips(*decoded, *stages, params))

    return verdict

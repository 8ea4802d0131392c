"""A decision's members, the candidate's against the reference's (`choice_flip.py`): a TopK's / ArgMax's chosen
indices, row by row; a comparison's booleans (a score threshold) element by element; a NonMaxSuppression's kept boxes
— each with the reference's margin at the members that differ, the format's rounding step there, and the candidate's
own error at them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cp_debug.bisect.findings.flip_why import rounding_step, stored

COMPARISONS = ("Greater", "Less", "GreaterOrEqual", "LessOrEqual")


@dataclass(frozen=True)
class Members:
    """The candidate's choice against the reference's. kind: "choice" (TopK / ArgMax / ArgMin: `chosen` per row),
    "threshold" (a comparison: `rows` elements, `replaced` of them came out otherwise), "nms" (NonMaxSuppression:
    `chosen` boxes kept by the reference, `replaced` of them not by the candidate, `entered` kept by it alone)."""

    chosen: int
    rows: int
    flipped_rows: int
    reordered: int
    replaced: int
    margin: float  # the largest reference margin at a member that differs
    step: float  # the format's rounding step there
    error: float  # the candidate's largest |error| at the members that differ
    kind: str = "choice"
    entered: int = 0
    threshold: float | None = None  # nms / threshold: the threshold the nearest member lies at
    near: str = ""  # nms: what lies at it ("score", "IoU")

    @classmethod
    def compare(cls, ref_idx: np.ndarray, cand_idx: np.ndarray, ref_x: np.ndarray, cand_x: np.ndarray,
                precision: str) -> "Members":
        """`ref_idx` / `cand_idx` (rows × k, the decision's axis last) of the values `ref_x` / `cand_x` (rows × n)."""
        rows, k = ref_idx.shape
        flipped = reordered = replaced = 0
        margin, step, error = 0.0, 0.0, 0.0
        for r in range(rows):
            a, b = ref_idx[r], cand_idx[r]
            at = np.flatnonzero(a != b)
            if not at.size:
                continue
            flipped += 1
            left = set(a.tolist()) - set(b.tolist())
            replaced += len(left)
            reordered += sum(1 for j in at if a[j] not in left)
            x, y = ref_x[r].astype(np.float64), cand_x[r].astype(np.float64)
            gaps = np.abs(x[a[at]] - x[b[at]])
            j = int(np.argmax(gaps))
            if gaps[j] >= margin:
                margin = float(gaps[j])
                step = float(rounding_step(np.array([max(abs(x[a[at[j]]]), abs(x[b[at[j]]]))]), precision)[0])
            members = np.concatenate([a[at], b[at]])
            error = max(error, float(np.abs(y[members] - x[members]).max()))
        return cls(k, rows, flipped, reordered, replaced, margin, step, error)

    @classmethod
    def threshold_of(cls, ref: tuple, cand: tuple, precision: str) -> "Members":
        """A comparison's (a, b, a ? b) on the reference's values and the candidate's: the elements whose boolean
        differs, the reference's |a - b| there (the value's distance to its threshold), the step at the larger of the
        two, the candidate's error in a - b there."""
        (a, b, out), (ca, cb, cout) = _wide(ref), _wide(cand)
        limit = b if np.size(ref[1]) <= np.size(ref[0]) else a  # the threshold: the side with fewer values (one)
        flip = out != cout
        gap, moved = np.abs(a - b)[flip], np.abs((ca - cb) - (a - b))[flip]
        j = int(np.argmax(gap))
        at = np.maximum(np.abs(a), np.abs(b))[flip][j]
        return cls(1, int(out.size), int(flip.sum()), 0, int(flip.sum()), float(gap[j]),
                   float(rounding_step(np.array([at]), precision)[0]), float(moved.max()), "threshold",
                   threshold=float(limit[flip][j]))

    @classmethod
    def nms_of(cls, ref: dict, cand: dict, node, iou: float, score: float | None, precision: str) -> "Members":
        """A NonMaxSuppression's kept boxes (its (batch, class, box) rows) on the reference's inputs and the
        candidate's: for each box kept by one side only, the nearer of its score's distance to `score` (the score
        threshold) and its IoU's distance to `iou` against the other boxes of its class either side kept."""
        center = next((a.i for a in node.attribute if a.name == "center_point_box"), 0)
        kept_r, kept_c = (list(map(tuple, np.asarray(s[node.output[0]]).reshape(-1, 3).tolist())) for s in (ref, cand))
        boxes = [np.asarray(s[node.input[0]], np.float64) for s in (ref, cand)]
        scores = [np.asarray(s[node.input[1]], np.float64) for s in (ref, cand)]
        one = set(kept_r) ^ set(kept_c)
        both = set(kept_r) | set(kept_c)
        margin, error, at, by = 0.0, 0.0, None, ""
        for b, c, i in sorted(one):
            near = []  # (distance to the threshold, the candidate's error in that value, the threshold, what)
            if score is not None:
                near.append((abs(scores[0][b, c, i] - score), abs(scores[1][b, c, i] - scores[0][b, c, i]), score,
                             "score"))
            for _, _, j in (m for m in both if m[:2] == (b, c) and m[2] != i):
                u = [float(_ious(bx[b, [i, j]], center)[0, 1]) for bx in boxes]
                near.append((abs(u[0] - iou), abs(u[1] - u[0]), iou, "IoU"))
            if near:
                d, e, t, what = min(near)
                if d >= margin:
                    margin, at, by = d, t, what
                error = max(error, e)
        reordered = sum(1 for x, y in zip(kept_r, kept_c) if x != y) if not one else 0
        step = float(rounding_step(np.array([abs(at)]), precision)[0]) if at is not None else 0.0
        return cls(len(kept_r), 1, int(bool(one) or reordered > 0), reordered, len(set(kept_r) - set(kept_c)),
                   margin, step, error, "nms", len(set(kept_c) - set(kept_r)), at, by)


def constants(graph, names: list[str]) -> dict:
    """The values of `names` held by the graph's initializers or Constant nodes (a threshold, NMS's settings)."""
    from onnx import numpy_helper

    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name in names}
    for n in graph.node:
        if n.op_type == "Constant" and n.output[0] in names and n.attribute and n.attribute[0].name == "value":
            found[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return found


def threshold_tie(node, values: dict, consts: dict, precision: str) -> tuple[int, int, float, float, float] | None:
    """A comparison of a value with a constant threshold (a score threshold) where some FP32 value lies within the
    format's rounding step of it, short of equal: (such values, values, the smallest distance, the step there, the
    threshold); None otherwise, or where neither side or both are constants."""
    sides = [values.get(t) if t in values else consts.get(t) for t in node.input[:2]]
    fixed = [t in consts and t not in values for t in node.input[:2]]
    if node.op_type not in COMPARISONS or any(v is None for v in sides) or fixed.count(True) != 1:
        return None
    if not all(np.issubdtype(np.asarray(v).dtype, np.floating) for v in sides):
        return None
    x, limit = (np.asarray(sides[1], np.float64), np.asarray(sides[0], np.float64)) if fixed[0] else \
        (np.asarray(sides[0], np.float64), np.asarray(sides[1], np.float64))
    gap = np.abs(x - limit)
    step = rounding_step(np.maximum(np.abs(x), np.abs(limit)), precision)
    tie = (gap > 0) & (gap <= step)
    if not tie.any():
        return None
    return (int(tie.sum()), int(x.size), float(gap[tie].min()), float(np.broadcast_to(step, x.shape)[tie].max()),
            float(np.asarray(limit).reshape(-1)[0]))


NMS_PAIRS_UP_TO = 4096  # boxes per batch whose pairwise IoUs nms_tie reads (their square, float64)


def nms_tie(node, values: dict, consts: dict, precision: str) -> tuple[int, float, float, float, str] | None:
    """A NonMaxSuppression whose FP32 boxes hold a pair whose IoU crosses its IoU threshold once their coordinates are
    rounded to the format (ONNX suppresses above it), or a score that crosses its score threshold once rounded:
    (such pairs and scores, the nearest FP32 value, its rounded twin, the threshold, "IoU" or "score"); None
    otherwise, or past `NMS_PAIRS_UP_TO` boxes."""
    boxes, scores = (values.get(t) for t in node.input[:2])
    if boxes is None or scores is None or np.shape(boxes)[-2] > NMS_PAIRS_UP_TO:
        return None
    iou, score = (setting(node, k, {**values, **consts}) for k in (3, 4))
    center = next((a.i for a in node.attribute if a.name == "center_point_box"), 0)
    found = []  # (|value - threshold|, value, rounded value, threshold, what)
    if score is not None:
        s = np.asarray(scores, np.float64)
        r = stored(s, precision)
        crossed = (s > score) != (r > score)
        found += [(abs(v - score), float(v), float(w), score, "score") for v, w in zip(s[crossed], r[crossed])]
    thr = iou or 0.0
    for b in np.asarray(boxes, np.float64):
        u, ur = _ious(b, center), _ious(stored(b, precision), center)
        i, j = np.nonzero(np.triu((u > thr) != (ur > thr), 1))
        found += [(abs(u[p, q] - thr), float(u[p, q]), float(ur[p, q]), thr, "IoU") for p, q in zip(i, j)]
    if not found:
        return None
    _, value, rounded, at, what = min(found)
    return len(found), value, rounded, at, what


def setting(node, k: int, values: dict) -> float | None:
    """A NonMaxSuppression's k-th input as one number (3: its IoU threshold, 4: its score threshold), where given."""
    t = node.input[k] if len(node.input) > k else ""
    return float(np.asarray(values[t]).reshape(-1)[0]) if t and t in values else None


def _ious(b: np.ndarray, center: int) -> np.ndarray:
    """The IoU of every pair of boxes `b` (N × 4, as NonMaxSuppression reads them)."""
    if center:
        x, y, w, h = b.T
        y1, x1, y2, x2 = y - h / 2, x - w / 2, y + h / 2, x + w / 2
    else:
        y1, x1, y2, x2 = np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 0], b[:, 2]), \
            np.maximum(b[:, 1], b[:, 3])
    h = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    w = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    inter = h * w
    area = (y2 - y1) * (x2 - x1)
    union = area[:, None] + area - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _wide(side: tuple) -> tuple:
    """(a, b, a ? b) with a and b float64 broadcast to the comparison's shape (a threshold is often one number)."""
    shape = np.shape(side[2])
    return (*(np.broadcast_to(np.asarray(v, np.float64), shape) for v in side[:2]), np.asarray(side[2]))

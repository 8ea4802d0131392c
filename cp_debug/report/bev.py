"""Bird's-eye maps of a CenterPoint divergence, in metres: where around the car the head maps change, and where a
heatmap peak crosses the score threshold on one side only (a box lost or added).

`BevMaps.from_heads(cfg, ref_head, cand_head)` takes the raw head maps (the last stage's outputs, (1, C, H, W)) of
the reference and a candidate and gives numpy arrays on the head grid with their extent in metres (head cell =
voxel size × out_size_factor, from the point cloud range's corner):
- per class, |Δ score| (the heatmap through the model's sigmoid: what the threshold cuts);
- reg as the centre shift (m), height (m), dim (m, after exp where the model predicts log sizes), rot as the yaw
  change (rad), vel (m/s) — each head's change in the units of the box it decodes to;
- the peak flips: the cells a decode keeps as a box (the recipe's decode, given by the caller: CenterPoint's
  top-k, threshold, range, circle NMS — `Detections.cells`) on one side whose score on the other side is at or below
  the threshold (or not finite): "lost" (reference only) or "added" (candidate only). That is what turns numeric
  error into a box.
`layer_maps(cfg, heatmaps)` places the per-layer BEV error maps of the root cause's segment (`report.plots[label]
["segment"]`, made by `compare.plot_data.error_heatmap`) on the same ground, where the layer's grid is the BEV grid
or an integer downsampling of it. No drawing here: `report/bev_plot.py` draws, the HTML, PNG and Rerun writers show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.boxes import Detections

Extent = tuple[float, float, float, float]  # x_min, x_max, y_min, y_max (m), as matplotlib's imshow takes it


@dataclass(frozen=True, eq=False)
class HeadPanel:
    """One map of the change of one head (or one class of the heatmap): `values` (H, W) float64, NaN where either
    side is not finite; `what` says the quantity, `unit` its unit."""

    name: str  # "heatmap: car", "reg", "height", "dim", "rot", "vel"
    what: str
    unit: str
    values: np.ndarray

    @property
    def max(self) -> float:
        finite = self.values[np.isfinite(self.values)]
        return float(finite.max()) if finite.size else math.nan


@dataclass(frozen=True)
class PeakFlip:
    """A heatmap peak kept as a box on one side only: where (m), which class, the cell, both sides' scores."""

    # "lost" (a reference peak at or below the threshold on the candidate) | "added" (the other way round) |
    # "lost by a cut" / "added by a cut" (kept on one side only though above the threshold on both: the other side's
    # circle NMS, top-k or post_max_size cut kept another peak)
    kind: str
    cls: str
    x: float
    y: float
    row: int
    col: int
    ref_score: float
    cand_score: float

    def to_json(self) -> dict:
        return {"kind": self.kind, "class": self.cls, "x": self.x, "y": self.y, "row": self.row, "col": self.col,
                "ref_score": _num(self.ref_score), "cand_score": _num(self.cand_score)}


@dataclass(frozen=True, eq=False)
class BevMaps:
    """The head maps' change between a reference and a candidate on the head grid, placed in metres."""

    extent: Extent
    cell_m: tuple[float, float]  # (x, y) size of a head cell
    threshold: float
    class_names: tuple[str, ...]
    panels: tuple[HeadPanel, ...]  # per class |Δ score|, then reg, height, dim, rot, vel
    score_change: np.ndarray  # (H, W): max over classes of |Δ score|
    nonfinite: np.ndarray  # (H, W) bool: a cell where either side holds NaN/Inf in any head
    lost: np.ndarray  # (H, W) bool: a reference peak whose candidate score is at or below the threshold
    added: np.ndarray  # (H, W) bool: a candidate peak whose reference score is at or below the threshold
    flips: tuple[PeakFlip, ...]
    reference_boxes: "Detections"
    candidate_boxes: "Detections"

    @classmethod
    def from_heads(cls, cfg: Any, ref_head: Mapping[str, np.ndarray], cand_head: Mapping[str, np.ndarray],
                   threshold: float | None = None, *, decode: Callable[..., "Detections"],
                   head_names: tuple[str, ...]) -> "BevMaps":
        """The maps of `cand_head` against `ref_head` (dicts by head name, (1, C, H, W) each) for `cfg`'s grid;
        `threshold`: the score threshold (default the config's). The recipe's (`bisect.result.BevScene`): `decode`
        (head maps, cfg, *, score_threshold) → Detections, and `head_names`, the maps it decodes."""
        thr = float(cfg.score_threshold if threshold is None else threshold)
        ref, cand = _heads(ref_head, head_names, "reference"), _heads(cand_head, head_names, "candidate")
        for name in head_names:
            if ref[name].shape != cand[name].shape:
                raise BadInputError(f"head map {name!r}: reference {list(ref[name].shape)} but candidate "
                                    f"{list(cand[name].shape)}: no BEV map of a shape mix-up")
        heat_r, heat_c = ref["heatmap"], cand["heatmap"]
        _, height, width = heat_r.shape
        expect_w, expect_h = cfg.head_size
        if (width, height) != (expect_w, expect_h):
            raise BadInputError(f"head maps of {height} × {width} cells, but preset {cfg.name!r} has a "
                                f"{expect_h} × {expect_w} head grid: the maps cannot be placed in metres")
        cell = (float(cfg.voxel_size[0]) * cfg.out_size_factor, float(cfg.voxel_size[1]) * cfg.out_size_factor)
        x0, y0 = float(cfg.point_cloud_range[0]), float(cfg.point_cloud_range[1])
        extent = (x0, x0 + width * cell[0], y0, y0 + height * cell[1])
        with np.errstate(all="ignore"):
            score_r, score_c = _sigmoid(heat_r), _sigmoid(heat_c)
            bad = np.zeros((height, width), bool)
            for name in head_names:
                bad |= ~np.isfinite(ref[name]).all(0) | ~np.isfinite(cand[name]).all(0)
            dscore = np.abs(score_c - score_r)
            panels = [HeadPanel(f"heatmap: {c}", "|Δ score|", "", dscore[i]) for i, c in enumerate(cfg.class_names)]
            panels += _box_heads(cfg, ref, cand, cell)
            score_change = np.max(np.where(np.isfinite(dscore), dscore, -np.inf), axis=0)
            score_change = np.where(np.isfinite(score_change), score_change, np.nan)
        dets_r = decode(_batched(ref), cfg, score_threshold=thr)
        dets_c = decode(_batched(cand), cfg, score_threshold=thr)
        lost, added = np.zeros((height, width), bool), np.zeros((height, width), bool)
        flips = []
        for kind, dets, own, other, mark in (("lost", dets_r, score_r, score_c, lost),
                                             ("added", dets_c, score_c, score_r, added)):
            kept_there = set(zip((dets_c if kind == "lost" else dets_r).labels.tolist(),
                                 (dets_c if kind == "lost" else dets_r).cells.tolist()))
            for label, flat in zip(dets.labels.tolist(), dets.cells.tolist()):
                if (label, flat) in kept_there:  # a box on both sides
                    continue
                row, col = divmod(int(flat), width)
                theirs = float(other[label, row, col])
                # above the threshold on both sides: the other side kept another peak (circle NMS, the top-k or
                # post_max_size cut), not a threshold crossing
                crossed = not theirs > thr
                if crossed:
                    mark[row, col] = True
                ref_s, cand_s = (float(own[label, row, col]), theirs) if kind == "lost" else \
                    (theirs, float(own[label, row, col]))
                flips.append(PeakFlip(kind if crossed else f"{kind} by a cut", cfg.class_names[int(label)],
                                      x0 + (col + 0.5) * cell[0], y0 + (row + 0.5) * cell[1], row, col, ref_s,
                                      cand_s))
        return cls(extent, cell, thr, tuple(cfg.class_names), tuple(panels), score_change, bad, lost, added,
                   tuple(flips), dets_r, dets_c)

    def count(self, kind: str) -> int:
        return sum(f.kind == kind for f in self.flips)

    def summary(self) -> str:
        """One line: the peak flips and the largest score change."""
        top = max((p.max for p in self.panels[:len(self.class_names)] if math.isfinite(p.max)), default=math.nan)
        text = (f"{self.count('lost')} peak(s) fall to or below the score threshold {self.threshold:g} on the "
                f"candidate (boxes lost), {self.count('added')} rise above it (boxes added); max |Δ score| {top:.3g}")
        cut = self.count("lost by a cut") + self.count("added by a cut")
        if cut:
            text += f"; {cut} box(es) on one side only by a cut (NMS, top-k, post_max_size), not the threshold"
        bad = int(self.nonfinite.sum())
        if bad:
            text += f"; {bad} cell(s) hold NaN/Inf"
        return text


@dataclass(frozen=True, eq=False)
class LayerMap:
    """One layer's BEV error map (mean over channels of |Δ|, max-pooled), placed in metres."""

    probe: str
    values: np.ndarray  # (h, w) float64, inf where the layer's error is not finite
    extent: Extent
    source_shape: tuple[int, int]  # the layer's own (H, W)
    pool: tuple[int, int]


def layer_maps(cfg: Any, heatmaps: list[dict]) -> list[LayerMap]:
    """The heat maps of `heatmaps` (`compare.plot_data.error_heatmap` dicts) whose grid is the BEV grid of `cfg` or an
    integer downsampling of it, placed in metres; the others (not BEV maps) are left out."""
    nx, ny = cfg.grid_size
    x0, y0, x1, y1 = (float(cfg.point_cloud_range[i]) for i in (0, 1, 3, 4))
    out = []
    for hm in heatmaps:
        src = hm.get("source_shape") or hm.get("shape")
        data = hm.get("data")
        if not src or not data:
            continue
        h_src, w_src = int(src[0]), int(src[1])
        if ny % h_src or nx % w_src or ny // h_src != nx // w_src:
            continue
        kh, kw = (int(k) for k in (hm.get("pool") or (1, 1)))
        values = np.array([[_cell(v) for v in row] for row in data], dtype=np.float64)
        cx, cy = (x1 - x0) / w_src, (y1 - y0) / h_src
        extent = (x0, x0 + values.shape[1] * kw * cx, y0, y0 + values.shape[0] * kh * cy)
        out.append(LayerMap(str(hm.get("probe") or ""), values, extent, (h_src, w_src), (kh, kw)))
    return out


# -- helpers ----------------------------------------------------------------------------------------------------
def _heads(head: Mapping[str, np.ndarray], names: tuple[str, ...], side: str) -> dict[str, np.ndarray]:
    """Each head as (C, H, W) float64 (the batch's first sample)."""
    missing = [n for n in names if n not in head]
    if missing:
        raise BadInputError(f"the {side}'s head maps lack {', '.join(missing)}: no BEV maps")
    out = {}
    for n in names:
        a = np.asarray(head[n])
        if a.ndim != 4:
            raise BadInputError(f"head map {n!r} of the {side} must be (B, C, H, W), got {list(a.shape)}")
        out[n] = a[0].astype(np.float64)
    return out


def _batched(head: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: a[None].astype(np.float32) for n, a in head.items()}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _box_heads(cfg, ref: dict, cand: dict, cell: tuple[float, float]) -> list[HeadPanel]:
    """reg, height, dim, rot, vel as the change of the box each cell decodes to."""
    d = {n: cand[n] - ref[n] for n in ("reg", "height", "dim", "vel")}
    shift = np.hypot(d["reg"][0] * cell[0], d["reg"][1] * cell[1])
    if cfg.norm_bbox:
        dim = np.max(np.abs(np.exp(cand["dim"]) - np.exp(ref["dim"])), axis=0)
    else:
        dim = np.max(np.abs(d["dim"]), axis=0)
    yaw_r = np.arctan2(ref["rot"][0], ref["rot"][1])
    yaw_c = np.arctan2(cand["rot"][0], cand["rot"][1])
    yaw = np.abs((yaw_c - yaw_r + np.pi) % (2 * np.pi) - np.pi)
    return [HeadPanel("reg", "centre shift", "m", shift),
            HeadPanel("height", "|Δ z|", "m", np.abs(d["height"][0])),
            HeadPanel("dim", "max |Δ size|", "m", dim),
            HeadPanel("rot", "|Δ yaw|", "rad", yaw),
            HeadPanel("vel", "|Δ velocity|", "m/s", np.hypot(d["vel"][0], d["vel"][1]))]


def _cell(v) -> float:
    if isinstance(v, str):  # plot_data writes a non-finite cell as "inf"
        return math.inf
    return math.nan if v is None else float(v)


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None

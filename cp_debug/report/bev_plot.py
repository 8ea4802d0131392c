"""The BEV pictures of a CenterPoint bisect, drawn from `report/bev.py`'s maps (matplotlib, Agg canvas): PNG bytes
that the bisect and sweep HTML embed and `--pictures DIR` writes.

Per candidate: `bev-<label>.png` — one panel per head (|Δ score| per class; reg, height, dim, rot, vel as the box's
change), the points, the ground truth (green) and both sides' boxes (reference blue, candidate red, dashed) drawn
over, axes in metres; `peakflip-<label>.png` — the largest |Δ score| with every peak that crosses the threshold on
one side only (▼ lost, ▲ added) and the boxes; `segment-<label>.png` — the per-layer BEV error of the root cause's
segment on one colour scale.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cp_debug.bisect.result import BevScene, BisectReport
from cp_debug.report.bev import BevMaps, LayerMap, layer_maps
from cp_debug.report.figure import figure_png, img_tag, new_figure, plain_log_ticks

REF_COLOUR, CAND_COLOUR, GT_COLOUR = "#1565c0", "#d32f2f", "#2e7d32"
LOST_COLOUR, ADDED_COLOUR, CUT_COLOUR, NONFINITE_COLOUR = "#ff9800", "#e040fb", "#ffeb3b", "#00e5ff"
MAX_POINTS = 30000  # points drawn on the peak-flip map (a stride over the scan); a head panel draws a fifth
DECADES = 3  # a colour scale spans at most this many decades below the map's largest value


@dataclass(frozen=True)
class Picture:
    """One picture: `name` is its file stem, `title` its caption (and alt text)."""

    name: str
    title: str
    png: bytes


def bev_maps(report: BisectReport, label: str) -> BevMaps | None:
    """The maps of candidate `label` against the reference, or None where the run kept no head maps for it."""
    scene = report.scene
    if scene is None or label not in scene.candidates or not scene.reference or scene.decode is None:
        return None
    return BevMaps.from_heads(scene.config, scene.reference, scene.candidates[label], decode=scene.decode,
                              head_names=scene.head_names)


def segment_maps(report: BisectReport, label: str) -> list[LayerMap]:
    """The root cause's segment as BEV maps (its layers on the BEV grid), where the run kept them."""
    scene = report.scene
    kept = (report.plots.get(label) or {}).get("segment") or []
    if scene is None or not kept:
        return []
    return layer_maps(scene.config, kept)


@dataclass(frozen=True)
class BevPictures:
    """A candidate's BEV pictures and the one line that says what they show."""

    label: str
    summary: str
    pictures: tuple[Picture, ...]


def bisect_pictures(report: BisectReport, prefix: str = "") -> dict[str, BevPictures]:
    """Per candidate label, its pictures (none for a candidate without head maps); `prefix` starts every name."""
    out: dict[str, BevPictures] = {}
    for cand in report.candidates:
        maps = bev_maps(report, cand.label)
        if maps is None:
            continue
        slug = prefix + _slug(cand.label)
        what = f"{cand.label} vs {report.reference}"
        pics = [Picture(f"bev-{slug}", f"head maps' change, {what}", heads_png(maps, report.scene, what)),
                Picture(f"peakflip-{slug}", f"peak flips at the score threshold, {what}",
                        peak_flip_png(maps, report.scene, what))]
        layers = segment_maps(report, cand.label)
        if layers:
            root = cand.root_cause.probe if cand.root_cause else None
            pics.append(Picture(f"segment-{slug}", f"BEV error of the root cause's segment, {what}",
                                segment_png(layers, root, what)))
        out[cand.label] = BevPictures(cand.label, maps.summary(), tuple(pics))
    return out


def pictures_html(pictures: BevPictures | None) -> str:
    """The HTML block of one candidate's BEV pictures (inline PNGs), or "" where there are none."""
    if pictures is None:
        return ""
    from html import escape

    return ("<h3>Bird's-eye view (m)</h3>" + f'<div class="note">{escape(pictures.summary)}</div>'
            + "".join(img_tag(p.png, p.title) for p in pictures.pictures))


def write_pictures(pictures: list[Picture], folder: str | os.PathLike) -> list[Path]:
    """Each picture as FOLDER/<name>.png, written whole."""
    from cp_debug.files import write_bytes_atomic

    return [write_bytes_atomic(Path(folder) / f"{p.name}.png", p.png, parents=True) for p in pictures]


# -- drawing --------------------------------------------------------------------------------------------------
def heads_png(maps: BevMaps, scene: BevScene | None, title: str) -> bytes:
    """One panel per head map; each on its own colour scale (log where it spans > 2 decades)."""
    n = len(maps.panels)
    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig = new_figure(3.9 * cols, 3.5 * rows + 0.6, layout=None)
    fig.subplots_adjust(left=0.04, right=0.97, bottom=0.07, top=0.88, wspace=0.32, hspace=0.32)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    for ax, panel in zip(axes, maps.panels):
        im = _map(ax, panel.values, maps.extent, nonfinite=maps.nonfinite)
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        plain_log_ticks(cb)
        cb.ax.tick_params(labelsize=7, which="both")
        cb.ax.minorticks_off()
        unit = f" ({panel.unit})" if panel.unit else ""
        ax.set_title(f"{panel.name}: {panel.what}{unit}\nmax {_fmt(panel.max)}", fontsize=8.5, loc="left",
                     y=1.0)  # y given: matplotlib skips measuring every axis to place the title
        _overlay(ax, maps, scene, points_size=0.2, labels=False, max_points=MAX_POINTS // 5)
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax in axes[(rows - 1) * cols:]:
        ax.set_xlabel("x (m)", fontsize=8)
    for ax in axes[::cols]:
        ax.set_ylabel("y (m)", fontsize=8)
    fig.suptitle(f"{title}: change of every head map (cyan: NaN/Inf; boxes: ground truth green, reference blue, "
                 "candidate red dashed)", fontsize=10)
    return figure_png(fig)


def peak_flip_png(maps: BevMaps, scene: BevScene | None, title: str) -> bytes:
    """The largest |Δ score| over classes, the peaks that cross the threshold on one side only, and the boxes."""
    fig = new_figure(9.6, 8.6)
    ax = fig.subplots()
    im = _map(ax, maps.score_change, maps.extent, nonfinite=maps.nonfinite, cmap="Greys")
    cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.01)
    plain_log_ticks(cb)
    cb.set_label("max over classes of |Δ score|", fontsize=8)
    _overlay(ax, maps, scene, points_size=0.3, labels=True, max_points=MAX_POINTS)
    for kind, marker, colour, words in (("lost", "v", LOST_COLOUR, "below the threshold on the candidate: lost"),
                                        ("added", "^", ADDED_COLOUR, "above it on the candidate only: added"),
                                        ("lost by a cut", "D", CUT_COLOUR, "reference only, by NMS / top-k cut"),
                                        ("added by a cut", "d", CUT_COLOUR, "candidate only, by NMS / top-k cut")):
        flips = [f for f in maps.flips if f.kind == kind]
        if flips or kind in ("lost", "added"):
            ax.scatter([f.x for f in flips], [f.y for f in flips], marker=marker, s=110, color=colour,
                       edgecolors="black", linewidths=0.8, zorder=6, label=f"{len(flips)} peak(s) {words}")
    for f in sorted(maps.flips, key=lambda f: -max(_finite(f.ref_score), _finite(f.cand_score)))[:12]:
        ax.annotate(f"{f.cls} {_fmt(f.ref_score)}→{_fmt(f.cand_score)}", (f.x, f.y), textcoords="offset points",
                    xytext=(6, 6), fontsize=7.5, color="black",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75}, zorder=7)
    ax.legend(loc="upper right", fontsize=7.5, framealpha=0.9)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"{title}: peaks crossing the score threshold {maps.threshold:g} on one side only\n"
                 + "\n".join(textwrap.wrap(maps.summary(), 120)), fontsize=9, loc="left", y=1.0)
    return figure_png(fig)


def segment_png(layers: list[LayerMap], root: str | None, title: str) -> bytes:
    """The layers of the root cause's segment in execution order, on one log colour scale."""
    from matplotlib.colors import LogNorm

    n = len(layers)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = new_figure(3.6 * cols + 1.0, 3.5 * rows + 0.6, layout=None)
    fig.subplots_adjust(left=0.07, right=0.86, bottom=0.08, top=0.82, wspace=0.25, hspace=0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    pos = np.concatenate([m.values[np.isfinite(m.values) & (m.values > 0)] for m in layers])
    lo, hi = (float(pos.min()), float(pos.max())) if pos.size else (1e-12, 1.0)
    norm = LogNorm(vmin=lo, vmax=max(hi, lo * 10))
    im = None
    for ax, m in zip(axes, layers):
        im = _map(ax, m.values, m.extent, norm=norm)
        mark = " ◀ root cause" if m.probe == root else ""
        ax.set_title(f"{_short(m.probe)}{mark}\n{m.source_shape[0]}×{m.source_shape[1]} cells, max "
                     f"{_fmt(float(np.nanmax(m.values)) if np.isfinite(m.values).any() else math.nan)}",
                     fontsize=8, loc="left", color="#b26a00" if mark else "black", y=1.0)
    for ax in axes[n:]:
        ax.set_visible(False)
    if im is not None:
        cax = fig.add_axes((0.89, 0.1, 0.018, 0.7))
        cb = fig.colorbar(im, cax=cax)
        plain_log_ticks(cb)
        cb.set_label("mean |Δ| over channels", fontsize=8)
    fig.suptitle(f"{title}: BEV error layer by layer along the root cause's segment (x, y in m)", fontsize=10)
    return figure_png(fig)


def _map(ax, values: np.ndarray, extent, *, nonfinite: np.ndarray | None = None, cmap: str = "inferno",
         norm=None):
    """`values` on `ax` in metres; NaN/Inf (and the `nonfinite` cells) cyan; exact zeros the darkest colour."""
    from matplotlib import colormaps

    shown, bad, norm = _scaled(values, nonfinite, norm)
    cm = colormaps[cmap].with_extremes(bad=NONFINITE_COLOUR)
    return ax.imshow(np.ma.masked_where(bad, shown), origin="lower", extent=extent, cmap=cm, norm=norm,
                     interpolation="nearest", aspect="equal")


def colour_image(values: np.ndarray, nonfinite: np.ndarray | None = None, cmap: str = "inferno") -> np.ndarray:
    """(H, W, 4) uint8: `values` coloured as the pictures colour them (row 0 is the map's first row, y min)."""
    from matplotlib import colormaps

    shown, bad, norm = _scaled(values, nonfinite, None)
    rgba = (colormaps[cmap](norm(np.where(bad, norm.vmin, shown))) * 255).astype(np.uint8)
    rgba[bad] = (0, 229, 255, 255)  # NONFINITE_COLOUR
    return rgba


def _scaled(values: np.ndarray, nonfinite: np.ndarray | None, norm):
    """(values with exact zeros at the floor, the bad cells, the norm): a log scale of at most `DECADES` decades
    where the map spans more than two, else linear from 0."""
    from matplotlib.colors import LogNorm, Normalize

    a = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(a)
    if nonfinite is not None:
        bad |= nonfinite
    if norm is None:
        pos = a[~bad & (a > 0)]
        lo, hi = (float(pos.min()), float(pos.max())) if pos.size else (1e-12, 1.0)
        hi = max(hi, lo * 10) if hi <= lo else hi
        lo = max(lo, hi * 10.0 ** -DECADES)  # FP16's noise everywhere stays dark, the hot spots stand out
        norm = LogNorm(vmin=lo, vmax=hi) if hi / lo > 100 else Normalize(vmin=0.0, vmax=hi)
    floor = norm.vmin if isinstance(norm, LogNorm) else 0.0
    return np.where(~bad & (a <= floor), floor, a), bad, norm


def _overlay(ax, maps: BevMaps, scene: BevScene | None, *, points_size: float, labels: bool,
             max_points: int) -> None:
    from matplotlib.collections import LineCollection

    if scene is not None and len(scene.points):
        pts = scene.points[:: max(1, -(-len(scene.points) // max_points))]
        ax.scatter(pts[:, 0], pts[:, 1], s=points_size, c="#9fb3c8", alpha=0.35, linewidths=0, zorder=2,
                   rasterized=True)
    sets = []
    if scene is not None and scene.truth is not None and len(scene.truth.boxes):
        sets.append((scene.truth.boxes, GT_COLOUR, "solid", "ground truth"))
    sets += [(maps.reference_boxes.boxes, REF_COLOUR, "solid", "reference"),
             (maps.candidate_boxes.boxes, CAND_COLOUR, (0, (3, 2)), "candidate")]
    for boxes, colour, style, name in sets:
        if len(boxes):
            ax.add_collection(LineCollection(box_corners(boxes), colors=colour, linewidths=1.1, linestyles=style,
                                             zorder=4, label=f"{name} ({len(boxes)})" if labels else None))
    x0, x1, y0, y1 = maps.extent
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.tick_params(labelsize=7)


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 5, 2): the closed BEV outline of boxes [x, y, z, l, w, h, yaw, ...] (l along the yaw)."""
    b = np.asarray(boxes, dtype=np.float64)
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    hl, hw = b[:, 3] / 2, b[:, 4] / 2
    local = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1], [1, 1]], dtype=np.float64)
    dx = local[None, :, 0] * hl[:, None]
    dy = local[None, :, 1] * hw[:, None]
    x = b[:, None, 0] + dx * c[:, None] - dy * s[:, None]
    y = b[:, None, 1] + dx * s[:, None] + dy * c[:, None]
    return np.stack([x, y], axis=-1)


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "nan" if v is None or math.isnan(v) else "inf"
    return f"{v:.3g}"


def _finite(v: float) -> float:
    return v if math.isfinite(v) else 0.0


def _short(name: str, n: int = 34) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1):]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)

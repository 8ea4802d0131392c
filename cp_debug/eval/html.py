"""One self-contained HTML page for an evaluation: metrics per backend, detection diffs, diagnoses, and a BEV
picture (matplotlib, base64 PNG) of the scan where a candidate differs most: points, ground truth, the
reference's boxes and the candidate's."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import numpy as np

from cp_debug.eval.report import EvalReport
from cp_debug.report.figure import equal_aspect_size, figure_png, fit_margins, img_tag, new_figure
from cp_debug.report.html import CSS
from cp_debug.files import write_text_atomic


def _fmt(v, digits=4) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _metrics(report: EvalReport) -> str:
    ms = [report.metrics[b] for b in report.backends]
    head = "".join(f'<th class="num">{escape(b)}</th>' for b in report.backends)
    rows = [("mAP", [m.mean_ap for m in ms]), ("NDS", [m.nds for m in ms])]
    rows += [(k, [m.tp_errors.get(k) for m in ms]) for k in ("mATE", "mASE", "mAOE", "mAVE", "mAAE")]
    for c in ms[0].per_class:
        rows.append((f"AP {c.name}", [{x.name: x.ap for x in m.per_class}.get(c.name) for m in ms]))
    body = "".join(f"<tr><td>{escape(k)}</td>" + "".join(f'<td class="num">{_fmt(v)}</td>' for v in vals) + "</tr>"
                   for k, vals in rows)
    return f"<section><h2>nuScenes metrics</h2><table><tr><th>metric</th>{head}</tr>{body}</table></section>"


def _diff(report: EvalReport, cand: str) -> str:
    d = report.diffs[cand]
    cols = ("class", "ref", "cand", "matched", "missing", "extra", "mean shift m", "max shift m", "mean Δscore",
            "max |Δscore|", "max Δyaw")
    head = "".join(f"<th{' class=num' if i else ''}>{c}</th>" for i, c in enumerate(cols))
    body = ""
    for c in (*d.per_class, d.total):
        vals = (c.reference, c.candidate, c.matched, c.missing, c.extra, f"{c.mean_centre_shift:.3g}",
                f"{c.max_centre_shift:.3g}", f"{c.mean_score_change:+.3g}", f"{c.max_abs_score_change:.3g}",
                f"{c.max_yaw_change:.3g}")
        body += f"<tr><td>{escape(c.name)}</td>" + "".join(f'<td class="num">{v}</td>' for v in vals) + "</tr>"
    diag = "".join(f'<div class="hint">{escape(x.message)}</div>' for x in report.diagnoses.get(cand, []))
    worst = ", ".join(f"{escape(s.token)} ({s.missing} missing, {s.extra} extra)" for s in d.worst_scenes(5))
    return (f"<section><h2>{escape(cand)} vs {escape(report.reference)}</h2>{diag}"
            f"<table><tr>{head}</tr>{body}</table>"
            + (f'<p class="note">most different scans: {worst}</p>' if worst else "") + "</section>")


def box_corners(box: np.ndarray) -> np.ndarray:
    x, y, _, l, w, _, yaw = box[:7]
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.array([[l, w], [l, -w], [-l, -w], [-l, w], [l, w]]) / 2.0
    return np.stack([x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1]], 1)


def draw_boxes(ax, boxes, label: str, colour: str, style: str, *, headings: bool = False) -> None:
    """The outlines of `boxes` (rows x, y, z, l, w, h, yaw, ...) on `ax`, one LineCollection (`label` in the legend
    where there is a box), and with `headings` a line from each centre to its front edge: the same strokes as a
    Line2D a box (~0.2 s for 150 boxes of the eval picture)."""
    from matplotlib.collections import LineCollection

    if len(boxes) == 0:
        return
    outlines = [box_corners(np.asarray(b, np.float64)) for b in boxes]
    line = {"colors": colour, "linestyles": style, "capstyle": "projecting" if style == "-" else "butt"}  # Line2D's
    ax.add_collection(LineCollection(outlines, linewidths=1.1, label=label, **line))
    if headings:
        heads = [[b[:2], c[:2].mean(0)] for b, c in zip(np.asarray(boxes, np.float64), outlines)]
        ax.add_collection(LineCollection(heads, linewidths=0.8, **line))
    ax.autoscale_view()


BEV_AREA = (7.2, 7.2)  # inches at most for a BEV map's axes (as in the 8 x 8 inch figure these pictures had)


def plot_bev(report: EvalReport, cand: str, token: str) -> bytes:
    """BEV of one scan: points (grey), ground truth (green), reference (blue), candidate (red, dashed)."""
    fig = new_figure(8.0, 8.0, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    if report.worst_points is not None:
        pts = np.asarray(report.worst_points)
        ax.scatter(pts[:, 0], pts[:, 1], s=0.2, c="#9aa3ad", linewidths=0)
    layers = (("ground truth", report.ground_truth[token], "#2e7d32", "-"),
              (report.reference, report.detections[report.reference].get(token), "#1f5fbf", "-"),
              (cand, report.detections[cand].get(token), "#c62828", "--"))
    for name, sb, colour, style in layers:
        if sb is not None:
            draw_boxes(ax, sb.boxes, name, colour, style, headings=True)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"{token}: {cand} vs {report.reference}")
    ax.legend(loc="upper right", fontsize=9)
    fit_margins(fig, ax, axes=equal_aspect_size(ax, *BEV_AREA))
    return figure_png(fig)


def render_html(report: EvalReport) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>cp_debug eval — {escape(report.preset)}</title>", f"<style>{CSS}</style></head><body><main>",
             f"<h1>cp_debug eval — {escape(report.preset)}</h1>",
             f'<div class="sub">{escape(report.weights)} · {report.settings.get("num_scenes", "?")} scans · '
             f"reference <b>{escape(report.reference)}</b></div>", _metrics(report)]
    worst = report.worst_scene()
    if worst is not None:
        cand, token = worst
        parts.append(f"<section><h2>Most different scan: {escape(token)}</h2>"
                     f"{img_tag(plot_bev(report, cand, token), 'BEV of ' + token)}</section>")
    parts += [_diff(report, cand) for cand in report.diffs]
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_html(report: EvalReport, path: str | os.PathLike) -> Path:
    return write_text_atomic(path, render_html(report))

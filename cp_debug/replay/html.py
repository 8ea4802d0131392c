"""One self-contained HTML page for a replay: the verdict, the variants ranked, and bird's-eye views of the
frames where the best variant agrees least (points, reference boxes, the best variant's, the deployment's)."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from cp_debug.eval.html import BEV_AREA, draw_boxes
from cp_debug.files import write_text_atomic
from cp_debug.replay.engine import FrameResult
from cp_debug.replay.report import ReplayReport
from cp_debug.report.figure import equal_aspect_size, figure_png, fit_margins, img_tag, new_figure
from cp_debug.report.html import CSS


def plot_frame(report: ReplayReport, frame: FrameResult) -> bytes:
    fig = new_figure(8.0, 8.0, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    if frame.bev_points is not None:
        ax.scatter(frame.bev_points[:, 0], frame.bev_points[:, 1], s=0.2, c="#9aa3ad", linewidths=0)
    best = report.best_index()
    layers = (("reference", frame.reference, "#1f5fbf", "-"),
              (f"best: {report.best_name}", frame.boxes[best] if frame.boxes else None, "#2e7d32", ":"),
              ("deployment", frame.deployed, "#c62828", "--"))
    for name, dets, colour, style in layers:
        if dets is not None:
            draw_boxes(ax, dets.boxes, name[:60], colour, style)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"frame {frame.token}: agreement {frame.agreements[best].fraction:.0%}")
    ax.legend(loc="upper right", fontsize=8)
    fit_margins(fig, ax, axes=equal_aspect_size(ax, *BEV_AREA))
    return figure_png(fig)


def render_html(report: ReplayReport) -> str:
    rows = "".join(
        f"<tr><td>{escape(s.variant.name)}</td><td>{escape(s.variant.family)}</td><td class=num>{s.deployed}</td>"
        f"<td class=num>{s.boxes}</td><td class=num>{s.agreeing}</td><td class=num>{s.fraction:.1%}</td></tr>"
        for s in sorted(report.scores, key=lambda s: -s.fraction))
    rows += "".join(f"<tr><td>{escape(g.name)}</td><td>{escape(g.family)} (consistency)</td><td></td><td></td><td></td>"
                    f"<td class=num>{g.fraction:.1%}</td></tr>" for g in report.groups)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>cp_debug replay — {escape(report.source)}</title>", f"<style>{CSS}</style></head><body><main>",
             f"<h1>cp_debug replay — {escape(report.source)}</h1>",
             f'<div class="sub">{escape(report.preset)} · {escape(report.weights)} · {escape(report.pairing)}</div>',
             f'<div class="hint">{escape(report.verdict())}</div>',
             "<section><h2>Glue variants</h2><table><tr><th>variant</th><th>family</th><th class=num>deployed</th>"
             "<th class=num>variant</th><th class=num>agree</th>"
             f"<th class=num>agreement</th></tr>{rows}</table></section>"]
    for f in report.worst_frames(3):
        img = img_tag(plot_frame(report, f), "BEV of " + f.token)
        parts.append(f"<section><h2>Frame {escape(f.token)}</h2>{img}</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_html(report: ReplayReport, path: str | os.PathLike) -> Path:
    return write_text_atomic(path, render_html(report))

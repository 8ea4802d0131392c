"""One self-contained HTML page for a BisectReport: summary, tables and plots (inline CSS, base64 PNGs).

Per candidate: the table, the error of every probe along the model (log scale, tolerance line, first divergent
and root cause marked), the error histogram at the root cause and the BEV heat map of where the error lives
(both from `report.plots[label]`). The figures are made through `figure.py` (matplotlib's Agg canvas: no display
needed).
"""

from __future__ import annotations

import math
import os
from html import escape
from pathlib import Path

from cp_debug.bisect.result import BisectReport, CandidateResult
from cp_debug.report.bev_plot import bisect_pictures, pictures_html
from cp_debug.report._format import (FIRST_DIVERGENT, ROOT_CAUSE, TIPS, Row, as_float, candidate_title, fmt_db, fmt_num,
                                     model_title,
                                     precision_line, rows, third_party_line, tolerance_for, tolerance_line, topo_rows,
                                     verdict)
from cp_debug.report.figure import (axis_depth, figure_png, fit_margins, fixed_margins, img_tag, new_figure,
                                     plain_log_ticks, text_size)
from cp_debug.report.int8_html import int8_section
from cp_debug.files import write_text_atomic
from cp_debug.files import json_text
from cp_debug.report.io import check_writable

STATUS_COLOR = {"ok": "#2e7d32", "diverged": "#c62828", "nan": "#8e24aa", "inf": "#8e24aa", "shape_mismatch": "#ef6c00",
                "missing": "#9e9e9e"}
CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1320px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:0 0 8px}h3{font-size:15px;margin:18px 0 6px;color:#444}
.sub{color:#667;margin-bottom:18px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:18px 22px;margin:18px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:4px 8px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:top}
th{background:#f0f2f6;font-weight:600;white-space:nowrap;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;
  font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px}
td.probe{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px;word-break:break-all}
td.idx,td.op{color:#777}
tr.fd td{background:#fdecea}tr.rc td{background:#fff6db}tr.fd.rc td{background:#fde7d6}
tr.path td.probe{font-weight:600}
.st{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px;font-weight:600}
.mark{white-space:nowrap;font-weight:600}.mark .fdm{color:#c62828}.mark .rcm{color:#b7791f}
.kv td:first-child{font-weight:600;white-space:nowrap;width:1%;padding-right:18px}
.verdict{font-weight:600}.v-ok{color:#2e7d32}.v-diverged{color:#c62828}.v-error{color:#b26a00}.v-unknown{color:#777}
.hint{background:#fff6db;border-left:4px solid #e0a800;padding:8px 12px;margin:10px 0;border-radius:4px}
.path{color:#35507a;margin:6px 0}.path code{background:#eef3fb;padding:1px 5px;border-radius:3px}
.warn{color:#8a5a00}
img.plot{display:block;max-width:100%;height:auto;margin:8px 0;border:1px solid #eceef2;border-radius:4px}
.plots{display:grid;grid-template-columns:1fr 1fr;gap:12px;align-items:start}
.plots img.plot{margin:0}
details{margin-top:10px}pre{background:#f6f8fa;padding:10px;border-radius:4px;overflow:auto;font-size:12px}
.note{color:#666;font-size:12.5px}
"""


def render_html(report: BisectReport, pictures: dict | None = None) -> str:
    """The whole page as one string. `pictures`: the BEV pictures by candidate (`report.bev_plot.bisect_pictures`),
    drawn here when not given."""
    if pictures is None:
        pictures = bisect_pictures(report)
    title = model_title(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cp_debug — {escape(str(title))}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>cp_debug report — {escape(str(title))}</h1>",
        f'<div class="sub">reference <b>{escape(report.reference)}</b> · '
        f"{len(report.candidates)} candidate{'s' if len(report.candidates) != 1 else ''} · "
        f"{len(report.probes)} probes</div>",
        _summary(report),
    ]
    for cand in report.candidates:
        parts.append(_candidate(report, cand, pictures.get(cand.label)))
    parts.append(int8_section(report))
    parts.append(_details(report))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_html(report: BisectReport, path: str | os.PathLike, pictures: dict | None = None) -> Path:
    check_writable(path)  # before the plots are drawn
    return write_text_atomic(path, render_html(report, pictures))


# -- sections -----------------------------------------------------------------------------------------------------
def _summary(report: BisectReport) -> str:
    out = ['<section id="summary"><h2>Summary</h2><table class="kv">',
           f"<tr><td>reference</td><td>{escape(report.reference)}</td></tr>"]
    for cand in report.candidates:
        kind, text = verdict(cand)
        label = candidate_title(cand)
        cell = f'<span class="verdict v-{kind}">{escape(text)}</span>'
        prec = precision_line(cand)
        if prec:
            cell += f'<div class="note">precision: {escape(prec)}</div>'
        tol = tolerance_line(report, cand)
        if tol:
            cell += f'<div class="note">{escape(tol)}</div>'
        if cand.detections:
            cell += f'<div class="note">detections: {escape(str(cand.detections.get("summary", "")))}</div>'
        if cand.wall_s is not None:
            cell += f'<div class="note">its runs and comparisons took {fmt_num(cand.wall_s)} s</div>'
        anchor = f'<a href="#c-{_slug(cand.label)}">{escape(label)}</a>' if cand.results else escape(label)
        out.append(f"<tr><td>{anchor}</td><td>{cell}</td></tr>")
    for w in report.warnings:
        out.append(f'<tr><td class="warn">warning</td><td class="warn">{escape(str(w))}</td></tr>')
    out.append("</table>")
    if report.third_party_warnings:
        line = third_party_line(report.third_party_warnings, verbose=True)
        items = "".join(f"<li><span class=\"note\">{escape(str(w.get('source')))}"
                        f"{' ×' + str(w.get('count')) if int(w.get('count', 1)) > 1 else ''}</span> "
                        f"<code>{escape(str(w.get('message')))}</code></li>" for w in report.third_party_warnings)
        out.append(f"<details><summary>{escape(line)}</summary><ul>{items}</ul></details>")
    out.append("</section>")
    return "\n".join(out)


def _candidate(report: BisectReport, cand: CandidateResult, pictures=None) -> str:
    kind, text = verdict(cand, hint=False)  # the hint has its own box below
    out = [f'<section id="c-{_slug(cand.label)}"><h2>{escape(cand.label)} vs {escape(report.reference)}</h2>',
           f'<div class="verdict v-{kind}">{escape(text)}</div>']
    if cand.error:
        out.append("</section>")
        return "\n".join(out)
    if cand.path:
        out.append('<div class="path">search path: ' + " → ".join(f"<code>{escape(p)}</code>" for p in cand.path)
                   + "</div>")
    if cand.root_cause:
        hint = f" — {escape(cand.root_cause.hint)}" if cand.root_cause.hint else ""
        rc = cand.root_cause
        named = f"≈ {rc.named}" if rc.tipped_by else f"{ROOT_CAUSE}: {rc.title}"
        out.append(f'<div class="hint"><b>{escape(named)}</b>{hint}</div>')
    out.append(_table(report, cand))
    tol = tolerance_for(report, cand.label)
    imgs = []
    png = _plot_errors(report, cand, tol)
    if png:
        imgs.append(img_tag(png, f"error of every probe along the model, {cand.label}"))
    extra = report.plots.get(cand.label) or {}
    side = []
    if extra.get("histogram"):
        png = _plot_histogram(extra["histogram"], tol)
        if png:
            side.append(img_tag(png, f"error histogram at {extra['histogram'].get('probe')}"))
    if extra.get("heatmap"):
        png = _plot_heatmap(extra["heatmap"])
        if png:
            side.append(img_tag(png, f"BEV error heat map at {extra['heatmap'].get('probe')}"))
    if imgs:
        out.append("<h3>Error along the model</h3>")
        out += imgs
    if side:
        out.append("<h3>Where the error is</h3>")
        out.append('<div class="plots">' + "".join(side) + "</div>" if len(side) > 1 else side[0])
    out.append(pictures_html(pictures))
    out.append("</section>")
    return "\n".join(out)


def _table(report: BisectReport, cand: CandidateResult) -> str:
    heads = ["#", "probe", "op", "max abs", "max/|ref|max", "rel RMSE", "cosine", "SNR dB", "local max abs", "ampl.",
             "status", ""]
    num = {"max abs", "max/|ref|max", "rel RMSE", "cosine", "SNR dB", "local max abs", "ampl."}
    out = ["<table class=\"probes\"><thead><tr>"
           + "".join(f'<th class="{"num" if h in num else ""}">{escape(h)}</th>' for h in heads)
           + "</tr></thead><tbody>"]
    for row in rows(report, cand):
        r, d = row.result, row.result.diff
        cls = " ".join(c for c, on in (("fd", row.first_divergent), ("rc", row.root_cause), ("path", row.on_path))
                       if on)
        pad = f"padding-left:{8 + 18 * row.depth}px"
        name = ("› " if row.on_path else "") + row.probe
        title = f' title="{escape(r.note)}"' if r.note else ""
        cells = [
            f'<td class="idx">{"" if row.index is None else row.index}</td>',
            f'<td class="probe" style="{pad}"{title}>{escape(name)}</td>',
            f'<td class="op">{escape(row.op_type or "")}</td>',
            *(f'<td class="num">{v}</td>' for v in (
                fmt_num(d.max_abs if d else None), fmt_num(d.rel_max if d else None),
                fmt_num(d.rel_rmse if d else None), _fmt_cos(d.cosine if d else None),
                fmt_db(d.snr_db if d else None), fmt_num(r.local.max_abs if r.local else None),
                "—" if r.amplification is None else "×" + fmt_num(r.amplification))),
            f'<td><span class="st" style="background:{STATUS_COLOR.get(r.status, "#777")}">'
            f"{escape(r.status)}</span></td>",
            f'<td class="mark">{_marks(row)}</td>',
        ]
        out.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _details(report: BisectReport) -> str:
    blocks = [("settings", report.settings), ("environment", report.environment),
              ("model", report.facts.to_json() if report.facts is not None else None)]
    body = "".join(f"<details><summary>{name}</summary><pre>{escape(json_text(value))}</pre></details>"
                   for name, value in blocks if value)
    return f'<section id="details"><h2>Run details</h2>{body or "<p class=note>none recorded</p>"}</section>'


def _marks(row: Row) -> str:
    marks = []
    if row.first_divergent:
        marks.append(f'<span class="fdm">{FIRST_DIVERGENT}</span>')
    if row.root_cause:
        marks.append(f'<span class="rcm">{ROOT_CAUSE}</span>')
    if row.tips:
        marks.append(f'<span class="rcm">{TIPS}</span>')
    return "<br>".join(marks)


def _fmt_cos(x) -> str:
    v = as_float(x)
    if v is None or not math.isfinite(v) or abs(v) < 0.999:
        return fmt_num(v)
    return f"{v:.6f}"  # close to 1, three significant digits would say nothing


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s)


# -- plots ----------------------------------------------------------------------------------------------------------
def _plot_errors(report: BisectReport, cand: CandidateResult, tol: dict | None) -> bytes | None:
    """max abs (with local max abs) and rel RMSE of every probe in topological order, log scale."""
    fig = errors_figure(report, cand, tol)
    return None if fig is None else figure_png(fig)


def errors_figure(report: BisectReport, cand: CandidateResult, tol: dict | None):
    """The figure of `_plot_errors`, or None where no probe has a diff."""
    rs = [r for r in topo_rows(report, cand) if r.result.diff is not None]
    if not rs:
        return None
    n = len(rs)
    fig = new_figure(12.5, 6.4 if n <= 40 else 5.6, layout=None)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    x = list(range(n))
    series = [
        (ax1, "max abs", [r.result.diff.max_abs for r in rs], [r.result.local.max_abs if r.result.local else None
                                                               for r in rs], tol and tol.get("atol"), "atol"),
        (ax2, "rel RMSE", [r.result.diff.rel_rmse for r in rs], None, tol and tol.get("rtol"), "rtol (guide)"),
    ]
    for ax, name, ys, local, tline, tname in series:
        _plot_panel(ax, rs, name, ys, local, tline, tname, name_root=ax is ax2 and n > 40)
    ax1.set_title(f"{cand.label} vs {report.reference}: error at each probe (topological order)", fontsize=11,
                  loc="left", y=1.0)  # y given: matplotlib skips measuring every axis to place it
    fd = next((i for i, r in enumerate(rs) if r.first_divergent), None)
    if fd is not None:
        ax1.annotate(FIRST_DIVERGENT.replace("◀ ", "") + " ▸", (fd, 1.0), xycoords=("data", "axes fraction"),
                     xytext=(-4, -12), textcoords="offset points", ha="right", fontsize=9,
                     color=STATUS_COLOR["diverged"])
    ax1.legend(loc="upper left", fontsize=8, framealpha=0.85)
    ax2.legend(loc="upper left", fontsize=8, framealpha=0.85)
    if n <= 40:
        ax2.set_xticks(x)
        labels = ax2.set_xticklabels([_short(r.probe) for r in rs], rotation=35, ha="right", fontsize=8)
    else:
        labels = []
        ax2.set_xlabel("probe (topological order)")
    ax2.set_xlim(-0.5, n - 0.5)
    _place_errors(fig, ax1, ax2, labels, n)
    return fig


def _place_errors(fig, ax1, ax2, labels: list, n: int) -> None:
    """Margins of `_plot_errors` from what its labels measure (the constrained layout took ~40 % of the plot):
    below, the probe names (slanted) or the x label; on the left, the y labels and the first probe name's tail."""
    w = fig.get_size_inches()[0]
    right, top, gap, pad = 0.08, 0.3, 0.14, 0.06
    if labels:
        lw, lh = text_size(fig, labels)
        bottom = lh + 0.1 + pad  # tick (3.5 pt) and its pad (3.5 pt): 0.1 in
        half = 0.5 / n  # the first tick sits half a probe inside the axes; its name reaches `lw` left of it
        first = (lw + pad - (w - right) * half) / (1 - half)
    else:
        bottom, first = 0.55, 0.0
    fixed_margins(fig, left=0.8, bottom=bottom, right=right, top=top, hgap=gap)  # ticks depend on the height only
    left = max(max(axis_depth(fig, ax.yaxis) for ax in (ax1, ax2)) + pad, first)
    fixed_margins(fig, left=left, bottom=bottom, right=right, top=top, hgap=gap)


def _plot_panel(ax, rs: list, name: str, ys: list, local: list | None, tline, tname: str, *, name_root: bool) -> None:
    """One panel of `_plot_errors`: the metric `ys` of every probe row `rs` (and the local one), its tolerance
    line `tline`, the first divergent probe and the root cause; `name_root` writes the root cause's name."""
    n = len(rs)
    x = list(range(n))
    vals = [as_float(v) for v in ys]
    # the range of the positive finite errors, local ones included; none (every error 0 or non-finite): 1e-8..1
    finite = [v for v in vals + [as_float(u) for u in local or ()] if v is not None and math.isfinite(v) and v > 0]
    lo, hi = (min(finite), max(finite)) if finite else (1e-8, 1.0)
    if tline:
        lo, hi = min(lo, float(tline)), max(hi, float(tline))
    floor, top = lo / 10, hi * 10

    def place(v, floor=floor, top=top):  # zero sits at the floor, inf/nan at the top: visible, never dropped
        if v is None:
            return None
        if not math.isfinite(v):
            return top
        return max(v, floor)

    ys_p = [place(v) for v in vals]
    ax.plot(x, ys_p, "-", color="#5b6b8c", lw=1.2, zorder=2, label="propagated")
    _status_marks(ax, rs, vals, ys_p, top)
    if local:
        lv = [(i, place(as_float(v))) for i, v in enumerate(local) if v is not None]
        if lv:
            ax.scatter([i for i, _ in lv], [v for _, v in lv], s=70, facecolors="none", edgecolors="#1f77b4",
                       linewidths=1.5, zorder=6, label="local (segment alone)")
    if tline:
        ax.axhline(float(tline), color="#888", ls="--", lw=1, zorder=1, label=f"{tname} {fmt_num(tline)}")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_ylim(floor / 2, top * 40)
    ax.set_ylabel(name)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    for i, r in enumerate(rs):
        if r.first_divergent:
            ax.axvline(i, color=STATUS_COLOR["diverged"], ls=":", lw=1.5, zorder=1)
        if r.root_cause:
            ax.scatter([i], [ys_p[i]], marker="*", s=260, color="#f2b705", edgecolors="#7a5a00", zorder=5,
                       label="root cause")
            if name_root:  # no per-probe tick labels: name the root cause on the plot
                ax.annotate(_short(r.probe, 40), (i, ys_p[i]), textcoords="offset points", xytext=(10, -14),
                            fontsize=8.5, color="#7a5a00", ha="left" if i < n * 0.7 else "right")


def _status_marks(ax, rs: list, vals: list, ys_p: list, top: float) -> None:
    """A dot per probe in its status colour, a triangle (and a word) at the top for NaN/Inf: one scatter each
    (a scatter per probe cost ~10 ms apiece)."""
    dots, peaks = [], []
    for i, (r, v) in enumerate(zip(rs, vals)):
        if v is not None and not math.isfinite(v):
            color = STATUS_COLOR.get(r.result.status, STATUS_COLOR["nan"])
            peaks.append((i, color))
            label = {"nan": "NaN", "inf": "Inf", "shape_mismatch": "shape"}.get(r.result.status,
                                                                                 "inf" if v > 0 else "nan")
            ax.annotate(label, (i, top), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7.5,
                        color=color)
        else:
            dots.append((i, ys_p[i], STATUS_COLOR.get(r.result.status, "#777")))
    if peaks:
        ax.scatter([i for i, _ in peaks], [top] * len(peaks), marker="^", s=60, color=[c for _, c in peaks],
                   zorder=4)
    if dots:
        ax.scatter([i for i, _, _ in dots], [y for _, y, _ in dots], s=26, color=[c for _, _, c in dots], zorder=3)


def _plot_histogram(h: dict, tol: dict | None) -> bytes | None:
    edges, counts = h.get("edges") or [], h.get("counts") or []
    if not edges or len(edges) != len(counts) + 1:
        return None
    fig = new_figure(6.2, 4.0, layout=None)
    ax = fig.subplots()
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color="#5b6b8c", edgecolor="#3d4a66", lw=0.3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis, ax.yaxis)
    ax.set_ylim(bottom=0.7)
    if tol and tol.get("atol"):
        ax.axvline(float(tol["atol"]), color="#c62828", ls="--", lw=1.2, label=f"atol {fmt_num(tol['atol'])}")
        ax.legend(fontsize=8)
    ax.set_xlabel("|candidate − reference|")
    ax.set_ylabel("elements")
    extra = [f"{h.get('total', sum(counts)):,} elements"]
    if h.get("every", 1) > 1:
        extra[0] += f" (every {h['every']}th of {h.get('source_total', 0):,})"
    if h.get("zeros"):
        extra.append(f"{h['zeros']:,} exact (not shown)")
    if h.get("nonfinite"):
        extra.append(f"{h['nonfinite']:,} NaN/Inf (not shown)")
    ax.set_title(f"error histogram at {_short(str(h.get('probe') or ''), 40)}\n" + ", ".join(extra), fontsize=10,
                 loc="left", y=1.0)
    fit_margins(fig, ax)
    return figure_png(fig)


def _plot_heatmap(hm: dict) -> bytes | None:
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize

    data = hm.get("data")
    if not data:
        return None
    a = np.array([[as_float(v) if as_float(v) is not None else math.nan for v in row] for row in data], dtype=float)
    bad = ~np.isfinite(a)
    pos = a[~bad & (a > 0)]
    fig = new_figure(6.2, 4.3 if a.shape[0] <= a.shape[1] else 5.4)
    ax = fig.subplots()
    cmap = colormaps["inferno"].with_extremes(bad="#00e5ff", under="#000004")
    vmin = float(pos.min()) if pos.size else 1e-12
    vmax = float(pos.max()) if pos.size else 1.0
    if vmax <= vmin:
        vmax = vmin * 10
    log = vmax / vmin > 100
    norm = LogNorm(vmin=vmin, vmax=vmax) if log else Normalize(vmin=0.0, vmax=vmax)
    shown = np.where(~bad & (a <= 0), vmin / 10 if log else 0.0, a)  # exact cells: the darkest colour
    im = ax.imshow(np.ma.masked_where(bad, shown), origin="lower", cmap=cmap, norm=norm, interpolation="nearest",
                   aspect="equal")
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    plain_log_ticks(cb)
    pool = hm.get("pool") or [1, 1]
    cb.set_label(f"{hm.get('channel_reduce', 'mean')} |diff| over channels" +
                 (f", max over {pool[0]}×{pool[1]} cells" if pool != [1, 1] else ""), fontsize=8)
    src = hm.get("source_shape") or hm.get("shape")
    ax.set_xlabel(f"x cell (W = {src[1]})" if src else "x cell")
    ax.set_ylabel(f"y cell (H = {src[0]})" if src else "y cell")
    if pool != [1, 1]:  # label the axes in source-grid cells
        ax.xaxis.set_major_formatter(lambda v, _: f"{int(v * pool[1])}")
        ax.yaxis.set_major_formatter(lambda v, _: f"{int(v * pool[0])}")
    title = f"BEV error at {_short(str(hm.get('probe') or ''), 40)}"
    if bad.any():
        title += f"\ncyan: {int(bad.sum())} cell{'s' if bad.sum() != 1 else ''} with NaN/Inf"
    ax.set_title(title, fontsize=10, loc="left", y=1.0)
    return figure_png(fig)


def _short(name: str, n: int = 28) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1):]

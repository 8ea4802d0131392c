"""report.html of a sweep: the ranked frames, per candidate a heat map of frames x probes, the probes' spread and
the detection changes by class and range, the metrics, the worst frames' BEV and the bisected frames' maps."""

from __future__ import annotations

import base64
import html
import json
import math

from cp_debug.sweep.rank import RankedFrame
from cp_debug.sweep.session import SweepOptions, SweepOutcome
from cp_debug.sweep.summary import cell


def _png(fig) -> str:
    from cp_debug.report.figure import figure_png

    return f'<img src="data:image/png;base64,{base64.b64encode(figure_png(fig)).decode()}">'


def _heatmap(outcome: SweepOutcome, cand: str, top: int = 60) -> str:
    fig = heatmap_figure(outcome, cand, top)
    return "<p>no frame ran</p>" if fig is None else _png(fig)


def heatmap_figure(outcome: SweepOutcome, cand: str, top: int = 60):
    """log10 rel. RMSE of the `top` ranked frames x the probes of `cand`, a matplotlib Figure (None: no frame ran).
    The axes keep the size they had in a figure of min(14, 2 + 0.45 a probe) x min(12, 1.5 + 0.22 a frame) inches
    and the figure takes the labels' margins, measured (`fit_margins`), as `bbox_inches="tight"` cropped it."""
    import numpy as np

    from cp_debug.report.figure import axis_depth, fit_margins, new_figure

    by_index = {r.index: r for r in outcome.results}
    frames = [r for r in outcome.ranked if r.status != "failed"][:top]
    names = sorted({(s.order, s.probe) for s in outcome.spreads.values() if s.candidate == cand})
    if not frames or not names:
        return None
    grid = np.full((len(frames), len(names)), np.nan)
    for i, rf in enumerate(frames):
        c = next((c for c in by_index[rf.index].candidates if c.candidate == cand), None)
        for p in c.probes if c else ():
            j = next((k for k, (_, n) in enumerate(names) if n == p.probe), None)
            if j is not None and p.rel_rmse > 0:
                grid[i, j] = math.log10(p.rel_rmse) if math.isfinite(p.rel_rmse) else 3
    w, h = min(14, 2 + 0.45 * len(names)), min(12, 1.5 + 0.22 * len(frames))
    fig = new_figure(w, h, layout=None, dpi=90)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(grid, aspect="auto", cmap="magma")
    ax.set_xticks(range(len(names)), [n.split(".", 1)[-1] for _, n in names], rotation=75, fontsize=7)
    ax.set_yticks(range(len(frames)), [f"{r.rank}. {r.token}" for r in frames], fontsize=7)
    area_w, area_h = _AREA[0] * w, _AREA[1] * h
    heat, gap, bar = 0.8 * area_w, 0.05 * area_w, area_h / 20  # matplotlib's colorbar beside it: a 5 % pad, aspect 20
    width = heat + gap + bar  # its slot as wide as the bar it draws (its default 15 % would leave a blank band)
    cb = fig.colorbar(im, ax=ax, label="log10 rel. RMSE", fraction=bar / width, pad=gap / width)
    ax.set_title(f"{cand}: frames (ranked) x probes")
    fit_margins(fig, ax, right=0.06 + axis_depth(fig, cb.long_axis), axes=(width, area_h))
    return fig


_AREA = (0.775, 0.77)  # the share of a figure matplotlib's default margins give the axes (left .125, right .9, ...)


def _bev(outcome: SweepOutcome, rf: RankedFrame, lanes: list[str]) -> str:
    return _png(bev_figure(outcome, rf, lanes))


def bev_figure(outcome: SweepOutcome, rf: RankedFrame, lanes: list[str]):
    """The box centres of frame `rf`, the first lane's and its candidate's (and the ground truth), a matplotlib
    Figure whose axes take at most 3.5 x 3.5 inches at an equal aspect."""
    from cp_debug.report.figure import equal_aspect_size, fit_margins, new_figure

    res = next(r for r in outcome.results if r.index == rf.index)
    fig = new_figure(4.5, 4.5, layout=None, dpi=90)
    ax = fig.add_subplot(1, 1, 1)
    for lane, colour in zip([lanes[0], rf.candidate], ("tab:blue", "tab:red")):
        b = res.boxes.get(lane)
        if b and b["boxes"]:
            xs = [x[0] for x in b["boxes"]]
            ys = [x[1] for x in b["boxes"]]
            ax.scatter(xs, ys, s=[8 + 30 * s for s in b["scores"]], facecolors="none", edgecolors=colour, label=lane)
    if res.gt and res.gt["boxes"]:
        ax.scatter([x[0] for x in res.gt["boxes"]], [x[1] for x in res.gt["boxes"]], s=4, c="k", label="ground truth")
    _no_sliver(ax)
    ax.set_aspect("equal")
    ax.legend(fontsize=7)
    ax.set_title(f"{rf.rank}. {rf.token} (BEV, box centres)", fontsize=9)
    fit_margins(fig, ax, axes=equal_aspect_size(ax, _AREA[0] * 4.5, _AREA[1] * 4.5))
    return fig


def _no_sliver(ax, least: float = 0.5) -> None:
    """Each axis of `ax` spans at least `least` of the other's: boxes along one line (a road's lane) drawn at an
    equal aspect would leave a sliver of a picture, its legend past the edge."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    want = least * max(x1 - x0, y1 - y0)
    if x1 - x0 < want:
        ax.set_xlim((x0 + x1) / 2 - want / 2, (x0 + x1) / 2 + want / 2)
    if y1 - y0 < want:
        ax.set_ylim((y0 + y1) / 2 - want / 2, (y0 + y1) / 2 + want / 2)


def _table(rows: list[list], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


_STYLE = "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;" \
         "padding:2px 6px;font-size:12px}img.plot{display:block;max-width:100%;height:auto;margin:8px 0}" \
         ".note{color:#666;font-size:12.5px}</style>"


def render_samples_html(doc: dict) -> str:
    """report.html of a sample sweep or a shape-range search (`--torch` / `--onnx`) from its sweep.json: the verdict,
    the samples ranked, the shapes searched, and where each bisected sample's report is."""
    lanes = [doc["reference"], *doc["candidates"]]
    parts = [f"<h1>cpdebug sweep: {html.escape(' → '.join(lanes))}</h1>",
             f"<p><b>{html.escape(doc['verdict'])}</b></p>", f"<p class='note'>{html.escape(str(doc['samples']))}</p>"]

    def shape(f) -> str:
        return ", ".join(f"{n}={'x'.join(map(str, s))}" for n, s in (f.get("shape") or {}).items())

    def root(f) -> str | None:
        rc = f.get("root_cause")
        if rc is None and f.get("near_tie"):  # no single root cause: the layers that each tip a near tie
            return f"no single root cause ({', '.join(f['near_tie'])} each tip a near tie alone)"
        return rc.get("module") or rc.get("node") or rc.get("text") if isinstance(rc, dict) else rc

    parts.append("<h2>Ranked samples</h2>")
    parts.append(_table([[f["rank"], f["token"], shape(f), f["status"], f["candidate"], f["worst_probe"],
                          f["worst_ratio"], root(f), f["reason"]] for f in doc["frames"][:200]],
                        ["rank", "sample", "shape", "status", "candidate", "worst output", "x budget", "root cause",
                         "reason"]))
    search = doc.get("shape_search")
    if search:
        parts.append("<h2>Shape range searched</h2>")
        parts.append(f"<pre>{html.escape(json.dumps(search, indent=1, default=str)[:20000])}</pre>")
    if doc.get("bisect"):
        parts.append("<h2>Bisected samples</h2>")
        parts.append(_table([[t, r if isinstance(r, str) else r.get("reason")] for t, r in doc["bisect"].items()],
                            ["sample", "report"]))
    return f"<!doctype html><html><head><meta charset='utf-8'>{_STYLE}</head><body>{''.join(parts)}</body></html>"


def render_html(doc: dict, outcome: SweepOutcome, opts: SweepOptions, pictures: dict | None = None) -> str:
    lanes = list(opts.settings.backends)
    parts = [f"<h1>cpdebug sweep: {html.escape(' → '.join(lanes))}</h1>",
             f"<p><b>{html.escape(doc['verdict'])}</b></p>"]
    parts.append("<h2>Ranked frames</h2>")
    parts.append(_table([[f["rank"], f["token"], f["status"], f["class"], f["candidate"], f["worst_probe"],
                          f["worst_ratio"], f["local_probe"], f["first_divergent"], f.get("root_cause"), f["reason"]]
                         for f in doc["frames"][:50]],
                        ["rank", "token", "status", "class", "candidate", "worst probe", "x median", "local probe",
                         "first divergent", "root cause", "reason"]))
    for cand in lanes[1:]:
        parts.append(f"<h2>{html.escape(cand)}: heat map</h2>{_heatmap(outcome, cand)}")
        parts.append("<h3>Per-probe spread across frames (rel. RMSE)</h3>")
        parts.append(_table([[p["probe"], p["median"], p["p95"], p["max"], ", ".join(p["worst_frames"])]
                             for p in doc["probes"].get(cand, [])], ["probe", "median", "p95", "max", "worst frames"]))
        totals: dict = {}
        for f in doc["frames"]:
            d = f["detections"].get(cand)
            for group in ("by_class", "by_range"):
                for k, (m, lost, added) in (d or {}).get(group, {}).items():
                    t = totals.setdefault((group, k), [0, 0, 0])
                    t[0], t[1], t[2] = t[0] + m, t[1] + lost, t[2] + added
        parts.append("<h3>Detection changes by class and range</h3>")
        parts.append(_table([[g.replace("by_", ""), k, *v] for (g, k), v in totals.items()],
                            ["by", "group", "matched", "lost", "added"]))
    m = doc.get("metrics") or {}
    if m.get("chain"):
        parts.append("<h2>Metrics</h2>")
        parts.append(_table([[lane, (m["devkit"].get(lane) or {}).get("mAP"), (m["devkit"].get(lane) or {}).get("NDS")]
                             for lane in lanes], ["backend", "mAP", "NDS"]))
        parts.append(_table([[s["from"], s["to"], s["delta_map"], s["ci"]] for s in m["chain"]],
                            ["from", "to", "Δ mAP (ours)", f"{int(m['confidence'] * 100)}% CI"]))
    parts.append("<h2>Worst frames (BEV)</h2>")
    worst = [_bev(outcome, rf, lanes) for rf in outcome.ranked[:3] if rf.flagged]
    parts += worst or ["<p class='note'>Every frame within precision: nothing to draw (the pictures are of degraded "
                       "and diverged frames).</p>"]
    if pictures:
        from cp_debug.report.bev_plot import pictures_html

        parts.append("<h2>Bisected frames: bird's-eye maps in metres</h2>")
        for token, by_label in pictures.items():
            for label, pics in by_label.items():
                parts.append(f"<h3>{html.escape(token)}: {html.escape(label)}</h3>")
                parts.append(pictures_html(pics).replace("<h3>Bird's-eye view (m)</h3>", "", 1))
    return f"<!doctype html><html><head><meta charset='utf-8'>{_STYLE}</head><body>{''.join(parts)}</body></html>"

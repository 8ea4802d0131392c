"""The files of a sweep: `sweep.json` (schema `cp_debug.sweep/1`, a contract: extend it, never rename),
`frames.parquet` (a row per frame x candidate x probe) and `report.html`; and the terminal's ranked table.

sweep.json:
```
{ "schema": "cp_debug.sweep/1", "reference": "torch", "candidates": [...],
  "summary": {"frames", "ok", "diverged", "failed", "local", "uniform",
              "outcomes": {"within_precision", "degraded", "diverged"}, "box_change_frames": [token, ...]},
  "verdict": "<one line>", "outcome": "within_precision|degraded|diverged", "tolerance_mode": "model|fixed",
  "frames": [ {"token", "rank", "status": "ok|diverged|failed", "class": "local|uniform|null", "reason",
               "outcome": "within_precision|degraded|diverged|null (failed)", "outcome_reason",
               "num_points", "candidate", "worst_probe", "worst_ratio", "local_probe", "first_divergent",
               "detections": {"<cand>": {matched, lost, added, max_centre_shift, max_score_change,
                                         max_yaw_change, changed, by_class, by_range}},
               "candidates": {"<cand>": {class, worst_probe, worst_ratio, local_probe, first_divergent, outcome,
                                         reason, precision, worst_noise_ratio}},
               "root_cause": "<probe>" (bisected frames only), "hint"} ],
  "probes": {"<cand>": [ {"probe", "order", "median", "p95", "max", "frames", "worst_frames",
                          "expected_rel_rmse", "max_noise_ratio"} ]},
  "root_cause_counts": {"bisected", "counts": {probe: n}, "text"},
  "metrics": {"devkit": {lane: {mAP, NDS, ...}}, "ap_change": {cand: {class: {bucket: {ap_ref, ap_cand,
              delta, ci, num_gt}}}}, "chain": [{from, to, delta_map, ci, ...}], "bootstrap", "confidence"},
  "settings": {...}, "environment": {...}, "model": {...}, "local_factor": 10.0 }
```
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from cp_debug.compare.noise import Outcome
from cp_debug.sweep.explain import root_cause_counts
from cp_debug.sweep.rank import RankedFrame
from cp_debug.sweep.session import SweepOptions, SweepOutcome

SCHEMA = "cp_debug.sweep/1"


def _frame_doc(r: RankedFrame, result) -> dict:
    w = r.worst
    doc = {"token": r.token, "rank": r.rank, "status": r.status, "class": r.klass, "reason": r.reason,
           "num_points": r.num_points, "candidate": r.candidate,
           "worst_probe": w.worst_probe if w else None, "worst_ratio": w.worst_ratio if w else None,
           "local_probe": w.local_probe if w else None, "first_divergent": w.first_divergent if w else None,
           "detections": {c.candidate: {k: v for k, v in vars(c.detections).items()} for c in result.candidates},
           "candidates": {v.candidate: {"class": v.klass, "worst_probe": v.worst_probe, "worst_ratio": v.worst_ratio,
                                        "local_probe": v.local_probe, "first_divergent": v.first_divergent,
                                        "outcome": v.outcome.value, "reason": v.reason,
                                        "precision": _cand(result, v.candidate).precision,
                                        "worst_noise_ratio": _worst_noise(_cand(result, v.candidate))}
                          for v in r.verdicts},
           "outcome": r.outcome.value if r.outcome is not None else None,
           "outcome_reason": w.reason if w else None}
    if r.bisected:
        doc["root_cause"] = r.root_cause
        doc["hint"] = r.hint
    return doc


def _cand(result, label: str):
    return next(c for c in result.candidates if c.candidate == label)


def _worst_noise(c) -> float | None:
    """The largest rel. RMS error ÷ the precision's budget over the candidate's probes on one frame."""
    vals = [p.noise_ratio for p in c.probes if p.status != "missing" and not math.isnan(p.noise_ratio)]
    return max(vals) if vals else None


def _box_frames(outcome: SweepOutcome) -> list[str]:
    """Tokens of the frames where some candidate lost or added a box, in rank order."""
    by_index = {r.index: r for r in outcome.results}
    return [r.token for r in outcome.ranked if any(c.detections.lost + c.detections.added
                                                   for c in by_index[r.index].candidates)]


def model_verdict_line(outcome: SweepOutcome) -> str:
    """The verdict by the noise model: the outcome, the frames by outcome, what the tensors hold, which frames
    change boxes (and how many of those boxes sit at the score threshold)."""
    n = len(outcome.results)
    ran = [r for r in outcome.ranked if r.outcome is not None]
    count = {o: sum(1 for r in ran if r.outcome is o) for o in Outcome}
    parts = [f"{count[Outcome.WITHIN_PRECISION]} of {n} frames within precision"]
    parts += [f"{count[o]} {o.words}" for o in (Outcome.DEGRADED, Outcome.DIVERGED) if count[o]]
    failed = sum(1 for r in outcome.ranked if r.status == "failed")
    if failed:
        parts.append(f"{failed} failed")
    local: dict[str, int] = {}
    for r in ran:
        probe = next((v.local_probe for v in r.verdicts if v.klass == "local" and v.local_probe), None)
        if probe:
            local[probe] = local.get(probe, 0) + 1
    if local:
        top = max(local, key=local.get)
        parts.append(f"{sum(local.values())} by a layer-local fault (first at `{top}` on {local[top]})")
    parts += _tensor_parts(outcome) + [_box_part(outcome)]
    rc = root_cause_counts(outcome.ranked)
    if rc["text"]:
        parts.append(rc["text"])
    return f"{outcome.outcome.words}: " + "; ".join(parts)


def _tensor_parts(outcome: SweepOutcome) -> list[str]:
    """Per candidate: do its tensors hold its precision's noise, and how close to the budget they come."""
    cands: dict[str, tuple[str, float, int]] = {}
    for r in outcome.results:
        for c in r.candidates:
            beyond = any(p.status not in ("ok", "missing") for p in c.probes)
            prec, top, k = cands.get(c.candidate, (c.precision or "?", 0.0, 0))
            cands[c.candidate] = (prec, max(top, _worst_noise(c) or 0.0), k + int(beyond))
    out = []
    for label, (prec, top, beyond) in cands.items():
        if beyond:
            out.append(f"{label}: tensors beyond {prec.upper()}'s noise on {beyond} frame(s) (up to {top:.3g}× its "
                       "expected rounding)")
        else:
            out.append(f"{label}: the tensors hold {prec.upper()}'s noise (every probe ≤ {top:.2g}× its expected "
                       "rounding)")
    return out


def _box_part(outcome: SweepOutcome) -> str:
    """Which frames change boxes, and how many of the boxes lost/added sit at the score threshold."""
    boxes = _box_frames(outcome)
    if not boxes:
        return "no box lost or added"
    from cp_debug.models.centerpoint.presets import get_preset

    cfg = get_preset(outcome.opts.settings.preset) if outcome.opts else None
    lost = added = near = 0
    for r in outcome.results:
        for c in r.candidates:
            lost, added = lost + c.detections.lost, added + c.detections.added
            near += _at_threshold(c, cfg) if c.detections.lost + c.detections.added else 0
    shown = ", ".join(boxes[:5]) + (" …" if len(boxes) > 5 else "")
    return (f"boxes change on {len(boxes)} frame(s) ({shown}): {lost} lost, {added} added, {near} of them at the "
            "score threshold")


def _at_threshold(c, cfg) -> int:
    if cfg is None:
        return 0
    from cp_debug.sweep.judge import judge_delta

    return judge_delta(c.precision or "fp32", c.detections, cfg).at_threshold


def verdict_line(outcome: SweepOutcome) -> str:
    opts = outcome.opts
    if opts is not None and opts.settings.tolerance_mode == "model":
        return model_verdict_line(outcome)
    n = len(outcome.results)
    div = [r for r in outcome.ranked if r.status == "diverged"]
    failed = sum(1 for r in outcome.ranked if r.status == "failed")
    local = [r for r in div if r.klass == "local"]
    parts = [f"{len(div)} of {n} frames diverge"]
    if local:
        layers: dict[str, int] = {}
        for r in local:
            probe = next(v.local_probe for v in r.verdicts if v.klass == "local")
            layers[probe] = layers.get(probe, 0) + 1
        top = max(layers, key=layers.get)
        parts.append(f"{len(local)} by a layer-local fault (first at `{top}` on {layers[top]})")
    if len(div) - len(local):
        parts.append(f"{len(div) - len(local)} by uniform noise")
    if failed:
        parts.append(f"{failed} failed")
    rc = root_cause_counts(outcome.ranked)
    if rc["text"]:
        parts.append(rc["text"])
    return "; ".join(parts)


def sweep_doc(outcome: SweepOutcome, opts: SweepOptions) -> dict:
    from cp_debug.determinism import environment
    from cp_debug.sweep.rank import LOCAL_FACTOR

    opts = outcome.opts or opts
    by_index = {r.index: r for r in outcome.results}
    lanes = list(opts.settings.backends)
    probes: dict = {c: [] for c in lanes[1:]}
    for s in sorted(outcome.spreads.values(), key=lambda s: (s.candidate, s.order)):
        budget = _budgets(outcome, s.candidate, s.probe)
        probes.setdefault(s.candidate, []).append({"probe": s.probe, "order": s.order, "median": s.median, "p95": s.p95,
                                                   "max": s.max, "frames": s.frames, "worst_frames": list(s.worst),
                                                   **budget})
    count = {k: sum(1 for r in outcome.ranked if r.status == k) for k in ("ok", "diverged", "failed")}
    return {
        "schema": SCHEMA, "reference": lanes[0], "candidates": lanes[1:],
        "summary": {"frames": len(outcome.results), **count,
                    "local": sum(1 for r in outcome.ranked if r.klass == "local"),
                    "uniform": sum(1 for r in outcome.ranked if r.klass == "uniform"),
                    "outcomes": {o.value: sum(1 for r in outcome.ranked if r.outcome is o) for o in Outcome},
                    "box_change_frames": _box_frames(outcome)},
        "verdict": verdict_line(outcome),
        "outcome": outcome.outcome.value,
        "tolerance_mode": opts.settings.tolerance_mode,
        "frames": [_frame_doc(r, by_index[r.index]) for r in outcome.ranked],
        "probes": probes,
        "root_cause_counts": root_cause_counts(outcome.ranked),
        "metrics": outcome.metrics,
        "local_factor": opts.factor if opts.factor else LOCAL_FACTOR,
        "settings": {**opts.settings.to_json(), "scenes": str(opts.scenes) if opts.scenes else f"{opts.n} held-out "
                     "synthetic frames", "shard_size": opts.shard_size, "bisect_top": opts.bisect_top,
                     "bootstrap": opts.bootstrap, "executor": outcome.executor},
        "environment": environment(),
        "model": outcome.model,
        "model_record": opts.model_record.to_json() if opts.model_record is not None else None,
    }


def _budgets(outcome: SweepOutcome, cand: str, probe: str) -> dict:
    """The precision's budget at a probe (its smallest over the frames: INT8's depends on each frame's range) and
    the probe's largest rel. RMS error ÷ budget."""
    stats = [p for r in outcome.results for c in r.candidates if c.candidate == cand for p in c.probes
             if p.probe == probe and not math.isnan(p.noise_ratio)]
    if not stats:
        return {"expected_rel_rmse": None, "max_noise_ratio": None}
    return {"expected_rel_rmse": min(p.expected_rel_rmse for p in stats),
            "max_noise_ratio": max(p.noise_ratio for p in stats)}


def frame_rows(outcome: SweepOutcome):
    """The pandas frame of frames.parquet: a row per frame x candidate x probe (a failed frame: one row)."""
    import pandas as pd

    from cp_debug.sweep.rank import ratio

    rank = {r.index: r for r in outcome.ranked}
    rows = []
    for res in outcome.results:
        rf = rank[res.index]
        base = {"token": res.token, "index": res.index, "rank": rf.rank, "status": res.status, "class": rf.klass,
                "reason": res.reason, "num_points": res.num_points}
        if not res.candidates:
            rows.append({**base, "candidate": None, "probe": None})
        for c in res.candidates:
            d = c.detections
            for p in c.probes:
                s = outcome.spreads.get((c.candidate, p.probe))
                rows.append({**base, "candidate": c.candidate, "probe": p.probe, "order": p.order,
                             "rel_rmse": p.rel_rmse, "rel_max": p.rel_max, "cosine": p.cosine, "max_abs": p.max_abs,
                             "nan": p.nan, "inf": p.inf, "probe_status": p.status,
                             "ratio_to_median": ratio(p.rel_rmse, s.median) if s else math.nan,
                             "expected_rel_rmse": p.expected_rel_rmse, "noise_ratio": p.noise_ratio,
                             "outcome": rf.outcome.value if rf.outcome is not None else None,
                             "lost": d.lost, "added": d.added, "matched": d.matched,
                             "max_centre_shift": d.max_centre_shift, "max_score_change": d.max_score_change,
                             "max_yaw_change": d.max_yaw_change})
    return pd.DataFrame(rows)


def write_all(outcome: SweepOutcome, opts: SweepOptions, html_report: bool = True,
              pictures: dict | None = None, budget: dict | None = None, lint: list | None = None) -> dict:
    """sweep.json, frames.parquet (and report.html) in `opts.out`, each written whole; returns the JSON doc.
    `pictures`: the bisected frames' BEV pictures (`bisected_pictures`), drawn here for the HTML when not given;
    `budget`: the verdict of --budget (`eval.gates.budget_doc`), sweep.json's `budget`; `lint`: the checks run
    first (`lint.run.lint_reports_before_run`, each report's JSON), sweep.json's `lint`."""
    from cp_debug.files import write_atomic, write_json, write_text_atomic

    doc = sweep_doc(outcome, opts)
    if budget is not None:
        doc["budget"] = budget
    if lint is not None:
        doc["lint"] = lint
    out = Path(opts.out)
    write_json(out / "sweep.json", doc, parents=True)
    df = frame_rows(outcome)
    write_atomic(out / "frames.parquet", lambda f: df.to_parquet(f, index=False))
    if html_report:
        if pictures is None:
            pictures = bisected_pictures(outcome)
        write_text_atomic(out / "report.html", render_html(doc, outcome, opts, pictures))
    return doc


def bisected_pictures(outcome: SweepOutcome) -> dict[str, dict]:
    """token -> candidate label -> `report.bev_plot.BevPictures` of every frame the sweep bisected (file names
    start with the token)."""
    from cp_debug.bisect.result import BisectReport
    from cp_debug.report.bev_plot import bisect_pictures

    return {token: bisect_pictures(rep, prefix=f"{token}-") for token, rep in outcome.bisects.items()
            if isinstance(rep, BisectReport)}
def junit_suite(doc: dict, extra=()):
    """sweep.json's frames as one JUnit suite (`report.junit`): a case per frame, failed unless every candidate is
    within precision on it (fixed mode: unless it diverges), its figures in the message; `extra`: the budget's cases.
    With a budget (sweep.json's `budget`), which decides the exit code, a frame fails only when it diverges or fails:
    a degraded frame is the budget's to judge."""
    from cp_debug.report.junit import TestCase, TestSuite

    fixed = doc.get("tolerance_mode") == "fixed"
    passing = ("ok", "within_precision") + (("degraded",) if doc.get("budget") is not None else ())
    cases = []
    for f in doc["frames"]:
        state = f["status"] if fixed or f["status"] == "failed" else (f.get("outcome") or f["status"])
        bad = state not in passing
        figures: dict = {"rank": f["rank"], "status": f["status"], "outcome": f.get("outcome"), "class": f["class"],
                         "worst_probe": f["worst_probe"], "worst_ratio_to_median": f["worst_ratio"],
                         "local_probe": f["local_probe"], "root_cause": f.get("root_cause")}
        for cand, d in (f["detections"] or {}).items():
            figures[f"{cand}.lost_added"] = f"{d['lost']}/{d['added']}"
            figures[f"{cand}.max_centre_shift_m"] = d["max_centre_shift"]
            v = (f["candidates"] or {}).get(cand) or {}
            figures[f"{cand}.worst_noise_ratio"] = v.get("worst_noise_ratio")
        figures = {k: v for k, v in figures.items() if v is not None}
        failure = None
        if bad:
            parts = [f"{f['token']}: {state.replace('_', ' ')}", f.get("outcome_reason") or f["reason"] or ""]
            if f["worst_probe"]:
                parts.append(f"worst probe {f['worst_probe']} ({_cell(f['worst_ratio'])}× its median over frames)")
            if f["local_probe"]:
                parts.append(f"layer-local at {f['local_probe']}")
            parts += [f"{c}: {d['lost']} lost, {d['added']} added" for c, d in (f["detections"] or {}).items()
                      if d["lost"] or d["added"]]
            if f.get("root_cause"):
                parts.append(f"root cause {f['root_cause']}" + (f" ({f['hint']})" if f.get("hint") else ""))
            failure = "; ".join(p for p in parts if p)
        cases.append(TestCase(f["token"], f"cpdebug.sweep.{doc['reference']}", failure=failure,
                              properties=figures, failure_type=f"cpdebug.{state}"))
    props = {"reference": doc["reference"], "candidates": ",".join(doc["candidates"]), "outcome": doc["outcome"],
             "verdict": doc["verdict"], "tolerance_mode": doc.get("tolerance_mode")}
    return TestSuite("cpdebug.sweep", [*cases, *extra], {k: v for k, v in props.items() if v is not None})


# -- HTML ----------------------------------------------------------------------------------------------------
def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _heatmap(outcome: SweepOutcome, cand: str, top: int = 60) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by_index = {r.index: r for r in outcome.results}
    frames = [r for r in outcome.ranked if r.status != "failed"][:top]
    names = sorted({(s.order, s.probe) for s in outcome.spreads.values() if s.candidate == cand})
    if not frames or not names:
        return "<p>no frame ran</p>"
    grid = np.full((len(frames), len(names)), np.nan)
    for i, rf in enumerate(frames):
        c = next((c for c in by_index[rf.index].candidates if c.candidate == cand), None)
        for p in c.probes if c else ():
            j = next((k for k, (_, n) in enumerate(names) if n == p.probe), None)
            if j is not None and p.rel_rmse > 0:
                grid[i, j] = math.log10(p.rel_rmse) if math.isfinite(p.rel_rmse) else 3
    fig, ax = plt.subplots(figsize=(min(14, 2 + 0.45 * len(names)), min(12, 1.5 + 0.22 * len(frames))))
    im = ax.imshow(grid, aspect="auto", cmap="magma")
    ax.set_xticks(range(len(names)), [n.split(".", 1)[-1] for _, n in names], rotation=75, fontsize=7)
    ax.set_yticks(range(len(frames)), [f"{r.rank}. {r.token}" for r in frames], fontsize=7)
    fig.colorbar(im, ax=ax, label="log10 rel. RMSE")
    ax.set_title(f"{cand}: frames (ranked) x probes")
    return _png(fig)


def _bev(outcome: SweepOutcome, rf: RankedFrame, lanes: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = next(r for r in outcome.results if r.index == rf.index)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for lane, colour in zip([lanes[0], rf.candidate], ("tab:blue", "tab:red")):
        b = res.boxes.get(lane)
        if b and b["boxes"]:
            xs = [x[0] for x in b["boxes"]]
            ys = [x[1] for x in b["boxes"]]
            ax.scatter(xs, ys, s=[8 + 30 * s for s in b["scores"]], facecolors="none", edgecolors=colour, label=lane)
    if res.gt and res.gt["boxes"]:
        ax.scatter([x[0] for x in res.gt["boxes"]], [x[1] for x in res.gt["boxes"]], s=4, c="k", label="ground truth")
    ax.set_aspect("equal")
    ax.legend(fontsize=7)
    ax.set_title(f"{rf.rank}. {rf.token} (BEV, box centres)", fontsize=9)
    return _png(fig)


def _table(rows: list[list], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


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
    worst = [_bev(outcome, rf, lanes) for rf in outcome.ranked[:3] if rf.status == "diverged"]
    parts += worst or ["<p class='note'>No frame diverged: nothing to draw (the pictures are of diverged frames).</p>"]
    if pictures:
        from cp_debug.report.bev_plot import pictures_html

        parts.append("<h2>Bisected frames: bird's-eye maps in metres</h2>")
        for token, by_label in pictures.items():
            for label, pics in by_label.items():
                parts.append(f"<h3>{html.escape(token)}: {html.escape(label)}</h3>")
                parts.append(pictures_html(pics).replace("<h3>Bird's-eye view (m)</h3>", "", 1))
    style = "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;" \
            "padding:2px 6px;font-size:12px}img.plot{display:block;max-width:100%;height:auto;margin:8px 0}" \
            ".note{color:#666;font-size:12.5px}</style>"
    return f"<!doctype html><html><head><meta charset='utf-8'>{style}</head><body>{''.join(parts)}</body></html>"


def print_summary(doc: dict, console, top: int = 10) -> None:
    """The short ranked table and the verdict."""
    from rich.table import Table

    t = Table(title=f"sweep: {doc['reference']} vs {', '.join(doc['candidates'])}")
    for h in ("rank", "token", "outcome", "class", "candidate", "lost/added", "worst probe", "×median", "local probe",
              "root cause"):
        t.add_column(h)
    for f in doc["frames"][:top]:
        d = (f["detections"] or {}).get(f["candidate"]) or {}
        shown = (f.get("outcome") or f["status"]).replace("_", " ") if doc.get("tolerance_mode") != "fixed" \
            else f["status"]
        t.add_row(str(f["rank"]), f["token"], shown, f["class"] or "", f["candidate"] or "",
                  f"{d.get('lost', '')}/{d.get('added', '')}" if d else "", f["worst_probe"] or "",
                  _cell(f["worst_ratio"]), f["local_probe"] or "", f.get("root_cause") or (f["reason"] or ""))
    console.print(t)
    console.print(doc["verdict"])

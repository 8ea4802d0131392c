"""The files of a sweep: `sweep.json` (schema `cp_debug.sweep/2`, a contract: extend it, never rename),
`frames.parquet` (a row per frame x candidate x probe) and `report.html` (drawn by `report_html.py`); the verdict
line is `verdict.py`'s, the terminal's ranked table and the JUnit suite `summary.py`'s.

sweep.json:
```
{ "schema": "cp_debug.sweep/2", "reference": "torch", "candidates": [...],
  "summary": {"frames", "ok", "degraded", "diverged", "failed", "local", "uniform",
              "outcomes": {"within_precision", "degraded", "diverged"}, "box_change_frames": [token, ...]},
  "verdict": "<one line>", "outcome": "within_precision|degraded|diverged", "tolerance_mode": "model|fixed",
  "frames": [ {"token", "rank", "status": "within_precision|degraded|diverged|failed", "class": "local|uniform|null",
               "reason", "outcome": "within_precision|degraded|diverged|null (failed)", "outcome_reason",
               "num_points", "candidate", "worst_probe", "worst_ratio", "local_probe", "first_divergent",
               "detections": {"<cand>": {matched, lost, added, max_centre_shift, max_score_change,
                                         max_yaw_change, changed, by_class, by_range, lost_scores, added_scores,
                                         score_cuts, yaw_turns: [{change, rot_norm, rot_rms, label, x, y}]}},
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
Version 2 (issue 46, one vocabulary): a frame's `status` is its outcome (compare/noise.Outcome: within_precision,
degraded, diverged; the layer-local class counted) or failed, the word frames.parquet's `status`, the terminal's
table and the JUnit file (`cpdebug.<status>`) give it, and what the exit code follows (0, 4, 1; failed 1). Before,
`status` was ok|diverged|failed with "diverged" for any frame beyond the precision, a degraded one too; summary's
`diverged` counted those, and now counts diverged frames only (`degraded` beside it; `ok` the frames within
precision). The keys are version 1's; the values of `status` and `summary.diverged` changed, hence the new version
(`READS`: the versions cp_debug reads back, for `fix --from-sweep`).
"""

from __future__ import annotations

import math
from pathlib import Path

from cp_debug.compare.noise import Outcome
from cp_debug.sweep.explain import root_cause_counts
from cp_debug.sweep.frames_file import FramesFile
from cp_debug.sweep.rank import RankedFrame
from cp_debug.sweep.report_html import render_html
from cp_debug.sweep.session import SweepOptions, SweepOutcome
from cp_debug.sweep.verdict import box_frames, verdict_line, worst_noise

SCHEMA = "cp_debug.sweep/2"
READS = ("cp_debug.sweep/1", SCHEMA)  # both hold what `fix --from-sweep` reads (a failed frame is "failed" in both)


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
                                        "worst_noise_ratio": worst_noise(_cand(result, v.candidate))}
                          for v in r.verdicts},
           "outcome": r.outcome.value if r.outcome is not None else None,
           "outcome_reason": w.reason if w else None}
    if r.bisected:
        doc["root_cause"] = r.root_cause
        doc["hint"] = r.hint
        if r.near_tie:
            doc["near_tie"] = list(r.near_tie)
    return doc


def _cand(result, label: str):
    return next(c for c in result.candidates if c.candidate == label)


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
    count = {k: sum(1 for r in outcome.ranked if r.status == k) for k in ("degraded", "diverged", "failed")}
    count = {"ok": sum(1 for r in outcome.ranked if r.status == "within_precision"), **count}
    return {
        "schema": SCHEMA, "reference": lanes[0], "candidates": lanes[1:],
        "summary": {"frames": len(outcome.results), **count,
                    "local": sum(1 for r in outcome.ranked if r.klass == "local"),
                    "uniform": sum(1 for r in outcome.ranked if r.klass == "uniform"),
                    "outcomes": {o.value: sum(1 for r in outcome.ranked if r.outcome is o) for o in Outcome},
                    "box_change_frames": box_frames(outcome)},
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


def write_all(outcome: SweepOutcome, opts: SweepOptions, html_report: bool | Path = True,
              pictures: dict | None = None, budget: dict | None = None, lint: list | None = None,
              runs_on: dict | None = None) -> dict:
    """sweep.json, frames.parquet (and report.html, or the file `html_report` names) in `opts.out`, each written
    whole; returns the JSON doc.
    `pictures`: the bisected frames' BEV pictures (`bisected_pictures`), drawn here for the HTML when not given;
    `budget`: the verdict of --budget (`eval.gates.budget_doc`), sweep.json's `budget`; `lint`: the checks run
    first (`lint.run.lint_reports_before_run`, each report's JSON), sweep.json's `lint`; `runs_on`: what the sweep
    ran on (`cli/common/what_runs.py`: the built-in demo where no model was named), sweep.json's `runs_on`."""
    from cp_debug.files import write_atomic, write_json, write_text_atomic

    doc = sweep_doc(outcome, opts)
    if budget is not None:
        doc["budget"] = budget
    if lint is not None:
        doc["lint"] = lint
    if runs_on is not None:
        doc["runs_on"] = runs_on
    out = Path(opts.out)
    write_json(out / "sweep.json", doc, parents=True)
    made = outcome.frames_file if outcome.frames_file is not None else FramesFile(outcome, ahead=False)
    write_atomic(out / "frames.parquet", made.write_to)
    if html_report:
        if pictures is None:
            pictures = bisected_pictures(outcome)
        html_file = out / "report.html" if html_report is True else Path(html_report)
        write_text_atomic(html_file, render_html(doc, outcome, opts, pictures))
    return doc


def bisected_pictures(outcome: SweepOutcome) -> dict[str, dict]:
    """token -> candidate label -> `report.bev_plot.BevPictures` of every frame the sweep bisected (file names
    start with the token)."""
    from cp_debug.bisect.result import BisectReport
    from cp_debug.report.bev_plot import bisect_pictures

    return {token: bisect_pictures(rep, prefix=f"{token}-") for token, rep in outcome.bisects.items()
            if isinstance(rep, BisectReport)}

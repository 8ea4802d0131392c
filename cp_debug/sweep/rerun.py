"""A sweep as a Rerun recording (`cpdebug sweep --rrd FILE`): one time point per frame of the set on the `frame`
timeline — the scan and its ground truth, every backend's boxes, the per-probe error table and scalar series of
each candidate — and, on the frames the sweep bisected, the BEV maps and peak flips (`report/rerun_export.py`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cp_debug.bisect.result import BisectReport
from cp_debug.sweep.session import SweepOutcome, SweepOptions, select_frames


def sweep_recording(outcome: SweepOutcome, opts: SweepOptions, path: str | os.PathLike) -> Path:
    """Write the recording of `outcome` (frames loaded again, one at a time) to `path`, whole."""
    from cp_debug.report.bev_plot import bev_maps
    from cp_debug.report.rerun_export import ProbeRow, RerunWriter

    opts = outcome.opts or opts
    cfg = opts.settings.config()
    names = tuple(cfg.class_names)
    frames = {f.token: f for f in select_frames(opts)}
    lanes = list(opts.settings.backends)
    with RerunWriter(path, f"sweep {Path(opts.out).name}") as w:
        for res in sorted(outcome.results, key=lambda r: r.index):
            w.frame(res.index, res.token)
            scan = frames[res.token].load(cfg)
            w.scan(scan.points, scan.truth, names)
            for lane in lanes:
                b = res.boxes.get(lane)
                if b:
                    w.boxes(lane, np.asarray(b["boxes"], np.float64).reshape(-1, 9), np.asarray(b["scores"]),
                            np.asarray(b["labels"]), names, reference=lane == lanes[0])
            for c in res.candidates:
                w.probe_table(c.candidate, [ProbeRow(p.probe, p.rel_max, p.rel_rmse, p.status) for p in c.probes])
            report = outcome.bisects.get(res.token)
            if isinstance(report, BisectReport):
                for cand in report.candidates:
                    maps = bev_maps(report, cand.label)
                    if maps is not None:
                        w.bev(cand.label, maps)
    return w.path

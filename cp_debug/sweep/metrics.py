"""Metrics over the swept set: mAP/NDS per backend through `eval/devkit.py` (nuscenes-devkit, as `cpdebug eval`),
and per class x distance bucket each candidate's AP change against the reference with a paired bootstrap
confidence interval over frames; with several candidates, the chain of steps (torch -> ort -> ort-cpu-fp16 ...)
so that backend error and precision error are told apart.

The bootstrap needs AP thousands of times, so it is computed here in numpy exactly as the devkit's `accumulate`
and `calc_ap` do (center distance, greedy by score within each sample, 101 recall points, min recall and
precision 0.1, mean over the thresholds 0.5/1/2/4 m): matching never crosses frames, so each frame's
true-positive flags are computed once and a resample only concatenates them. Resampling is seeded: the same
sweep gives the same intervals.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from cp_debug.sweep.records import DISTANCE_BUCKETS, FrameResult, SweepSettings

DIST_THS = (0.5, 1.0, 2.0, 4.0)
MIN_RECALL = 0.1
MIN_PRECISION = 0.1
BUCKETS = (("all", 0.0, math.inf),) + tuple((name, lo, hi) for lo, hi, name in DISTANCE_BUCKETS)
CONFIDENCE = 0.95
SPARE_CORES = 8  # a host with this many cores or more evaluates each lane's devkit metrics in a process of its own


def _tables(gt: dict, det: dict, n_classes: int) -> dict:
    """(class, bucket) -> (number of GT boxes, det scores (n,), TP flags (n, thresholds)) of one frame."""
    gb = np.asarray(gt["boxes"], np.float64).reshape(-1, 9)
    gl = np.asarray(gt["labels"], np.int64).reshape(-1)
    npts = gt.get("num_points")
    if npts is not None:  # the devkit drops ground truth with no lidar point
        keep = np.asarray(npts) != 0
        gb, gl = gb[keep], gl[keep]
    db = np.asarray(det["boxes"], np.float64).reshape(-1, 9)
    ds = np.asarray(det["scores"], np.float64).reshape(-1)
    dl = np.asarray(det["labels"], np.int64).reshape(-1)
    gd, dd = np.hypot(gb[:, 0], gb[:, 1]), np.hypot(db[:, 0], db[:, 1])
    out = {}
    for c in range(n_classes):
        for name, lo, hi in BUCKETS:
            g = gb[(gl == c) & (gd >= lo) & (gd < hi)]
            sel = (dl == c) & (dd >= lo) & (dd < hi)
            boxes, scores = db[sel], ds[sel]
            order = np.argsort(-scores, kind="stable")
            boxes, scores = boxes[order], scores[order]
            tp = np.zeros((len(scores), len(DIST_THS)), dtype=bool)
            if len(g) and len(scores):  # every detection's distance to every GT box, once for the four thresholds
                dist = np.hypot(boxes[:, None, 0] - g[None, :, 0], boxes[:, None, 1] - g[None, :, 1])
                for k, th in enumerate(DIST_THS):
                    taken = np.zeros(len(g), dtype=bool)
                    for i in range(len(scores)):
                        d = np.where(taken, np.inf, dist[i])
                        j = int(np.argmin(d))
                        if d[j] < th:
                            taken[j] = True
                            tp[i, k] = True
            out[(c, name)] = (len(g), scores, tp)
    return out


def average_precision(npos: int, scores: np.ndarray, tp: np.ndarray) -> float:
    """Mean over the distance thresholds of the devkit's AP; nan where there is no ground truth."""
    if npos == 0:
        return math.nan
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp = np.cumsum(tp, axis=0)
    cfp = np.cumsum(1.0 - tp, axis=0)
    grid = np.linspace(0, 1, 101)
    aps = []
    for k in range(tp.shape[1]):
        prec = ctp[:, k] / (ctp[:, k] + cfp[:, k])
        rec = ctp[:, k] / npos
        p = np.interp(grid, rec, prec, right=0)[round(100 * MIN_RECALL) + 1:]
        p = np.clip(p - MIN_PRECISION, 0, None)
        aps.append(float(np.mean(p)) / (1.0 - MIN_PRECISION))
    return float(np.mean(aps))


def _ap(tables: Sequence[dict], idx: np.ndarray, key) -> float:
    parts = [tables[i][key] for i in idx]
    npos = sum(p[0] for p in parts)
    if npos == 0:
        return math.nan
    scores = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    tp = np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, len(DIST_THS)), bool)
    return average_precision(npos, scores, tp)


def _mean_ap(tables: Sequence[dict], idx: np.ndarray, n_classes: int) -> float:
    aps = [_ap(tables, idx, (c, "all")) for c in range(n_classes)]
    aps = [a for a in aps if not math.isnan(a)]
    return float(np.mean(aps)) if aps else math.nan


def _interval(values: list[float]) -> list[float] | None:
    arr = np.asarray([v for v in values if not math.isnan(v)])
    if arr.size == 0:
        return None
    a = (1 - CONFIDENCE) / 2
    return [float(np.quantile(arr, a)), float(np.quantile(arr, 1 - a))]


class MetricsAhead:
    """What the metrics over the set need of each frame, worked out on one helper thread while the frames still run
    (issue 71: the metrics ran alone after the last shard, 22 s of a 300-frame awml-base sweep on two H100s):
    each returned frame's TP tables, and the devkit's import. `sweep_metrics(…, ahead=)` takes what is ready and
    works out the rest (resumed frames) itself; the numbers are the same either way."""

    def __init__(self, settings: SweepSettings):
        import os
        from concurrent.futures import ThreadPoolExecutor

        self.lanes = list(settings.backends)
        self.n_classes = len(settings.config().class_names)
        self.tables: dict[str, dict] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-metrics")
        self._pool.submit(_import_devkit)
        # where the host has cores to spare (a GPU host), the devkit's evaluation of each lane runs in a process of
        # its own beside the bootstrap (its accumulate is pure Python: 8 of the 18 s a 300-frame awml-base sweep
        # spent after its frames, H100 host); started now, so their imports are paid while the frames run
        self.processes = None
        if len(os.sched_getaffinity(0)) >= SPARE_CORES:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.processes = ProcessPoolExecutor(len(self.lanes), mp_context=multiprocessing.get_context("spawn"))
            for _ in self.lanes:
                self.processes.submit(_import_devkit)

    def put(self, token: str, tables: dict) -> None:
        """A frame's tables worked out elsewhere (`frame_tables` in a Ray actor, beside its frames): `add` of that
        frame then has nothing left to do."""
        self.tables[token] = tables

    def add(self, r: FrameResult) -> None:
        if r.token not in self.tables and _usable(r, self.lanes):
            self._pool.submit(self._add, r)

    def _add(self, r: FrameResult) -> None:
        self.tables[r.token] = frame_tables(r, self.lanes, self.n_classes)

    def done(self) -> dict[str, dict]:
        """Every table worked out so far, once the helper has finished what it was given."""
        self._pool.shutdown(wait=True)
        return self.tables

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            self.processes.shutdown(wait=False, cancel_futures=True)
            self.processes = None


def _import_devkit() -> None:
    try:
        import nuscenes.eval.detection.algo  # noqa: F401 - 3.8 s of imports, paid while the frames run
    except Exception:  # noqa: BLE001 - missing or broken: `_devkit` says so in its own words later
        pass


def frame_tables(r: FrameResult, lanes: list[str], n_classes: int) -> dict | None:
    """lane -> the frame's TP tables (`_tables`), what the metrics over the set need of it; None for a frame they
    leave out (failed, or without ground truth)."""
    if not _usable(r, lanes):
        return None
    return {b: _tables(r.gt, r.boxes[b], n_classes) for b in lanes}


def _usable(r: FrameResult, lanes: list[str]) -> bool:
    return r.status != "failed" and r.gt is not None and all(b in r.boxes for b in lanes)


def sweep_metrics(results: list[FrameResult], settings: SweepSettings, bootstrap: int = 200,
                  ahead: MetricsAhead | None = None) -> dict:
    """The metrics block of sweep.json (None-valued where the frames have no ground truth). `ahead`: the tables
    a `MetricsAhead` worked out while the frames ran."""
    cfg = settings.config()
    names = tuple(cfg.class_names)
    lanes = list(settings.backends)
    frames = [r for r in results if _usable(r, lanes)]
    ready = ahead.done() if ahead is not None else {}
    if not frames:
        return {"note": "no frame with ground truth ran: metrics need an info file (or held-out synthetic frames)"}
    devkit = _devkit(frames, lanes, cfg, ahead.processes if ahead is not None else None)
    out: dict = {"frames": len(frames), "bootstrap": bootstrap, "confidence": CONFIDENCE,
                 "buckets": [b[0] for b in BUCKETS], "devkit": devkit}
    per_frame = [ready.get(r.token) or {b: _tables(r.gt, r.boxes[b], len(names)) for b in lanes} for r in frames]
    tables = {b: [t[b] for t in per_frame] for b in lanes}
    rng = np.random.default_rng(settings.seed)
    n = len(frames)
    samples = [rng.integers(0, n, n) for _ in range(bootstrap)]
    full = np.arange(n)
    ref = lanes[0]
    ap_change: dict = {}
    for cand in lanes[1:]:
        per_class: dict = {}
        for c, cname in enumerate(names):
            per_bucket = {}
            for bname, _, _ in BUCKETS:
                key = (c, bname)
                num_gt = sum(t[key][0] for t in tables[ref])
                if num_gt == 0:
                    continue
                a, b = _ap(tables[ref], full, key), _ap(tables[cand], full, key)
                deltas = [_ap(tables[cand], s, key) - _ap(tables[ref], s, key) for s in samples]
                per_bucket[bname] = {"ap_ref": a, "ap_cand": b, "delta": b - a, "ci": _interval(deltas),
                                     "num_gt": num_gt}
            if per_bucket:
                per_class[cname] = per_bucket
        ap_change[cand] = per_class
    out["ap_change"] = ap_change
    out["devkit"] = devkit = {b: v.result() if hasattr(v, "result") else v for b, v in devkit.items()}
    chain = []
    for a, b in zip(lanes, lanes[1:]):
        deltas = [_mean_ap(tables[b], s, len(names)) - _mean_ap(tables[a], s, len(names)) for s in samples]
        d = _mean_ap(tables[b], full, len(names)) - _mean_ap(tables[a], full, len(names))
        dk = out["devkit"]
        step = {"from": a, "to": b, "delta_map": d, "ci": _interval(deltas)}
        if dk.get(a) and dk.get(b):
            step["devkit_delta_map"] = _sub(dk[b].get("mAP"), dk[a].get("mAP"))
            step["devkit_delta_nds"] = _sub(dk[b].get("NDS"), dk[a].get("NDS"))
        chain.append(step)
    out["chain"] = chain
    return out


def _sub(a, b):
    return None if a is None or b is None else a - b


def _devkit(frames: list[FrameResult], lanes: list[str], cfg, processes=None) -> dict:
    """mAP, NDS and TP errors per lane from nuscenes-devkit (`eval/devkit.py`); a lane it cannot evaluate gets the
    one-line reason. With `processes` (a process pool), each lane's is a future the caller resolves."""
    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.devkit import default_range

    gt = {r.token: SampleBoxes(r.gt["boxes"], r.gt["labels"], num_points=r.gt.get("num_points")) for r in frames}
    out = {}
    for b in lanes:
        dets = {r.token: SampleBoxes(r.boxes[b]["boxes"], r.boxes[b]["labels"], r.boxes[b]["scores"]) for r in frames}
        args = (gt, dets, tuple(cfg.class_names), default_range(cfg.point_cloud_range))
        out[b] = processes.submit(_evaluate_lane, *args) if processes is not None else _evaluate_lane(*args)
    return out


def _evaluate_lane(gt: dict, dets: dict, class_names: tuple, class_range: float) -> dict:
    from cp_debug.errors import CpDebugError
    from cp_debug.eval.devkit import evaluate

    try:
        return evaluate(gt, dets, class_names, class_range=class_range).to_json()
    except CpDebugError as err:
        return {"error": str(err).splitlines()[0]}


def budget_figures(results: list[FrameResult], ranked: list, metrics: dict | None, settings: SweepSettings):
    """What a sweep measured of each candidate, for `--budget` (`eval.gates.CandidateFigures`): mAP/NDS (the devkit)
    and the AP change per class and per class x range bin (`sweep_metrics`), the box matching summed over frames
    and every matched pair's centre shift and yaw change (`eval.detection_diff`), each head output's rel. RMSE per
    frame, and the frames that failed or whose verdict for it is diverged (`ranked`: `rank.RankedFrame`s, whose
    verdicts hold the cross-frame layer-local class)."""
    from cp_debug.compare.noise import Outcome

    from cp_debug.eval.boxes import SampleBoxes
    from cp_debug.eval.detection_diff import diff_detections
    from cp_debug.eval.gates import CandidateFigures, head_outputs
    names = tuple(settings.config().class_names)
    lanes = list(settings.backends)
    ref = lanes[0]
    metrics = metrics or {}
    devkit, ap_change = metrics.get("devkit") or {}, metrics.get("ap_change") or {}
    ran = [r for r in results if r.status != "failed"]

    def boxes(lane: str) -> dict:
        return {r.token: SampleBoxes(r.boxes[lane]["boxes"], r.boxes[lane]["labels"], r.boxes[lane]["scores"])
                for r in ran if lane in r.boxes}

    ref_boxes = boxes(ref)
    out = []
    for cand in lanes[1:]:
        dk_ref, dk_cand = devkit.get(ref) or {}, devkit.get(cand) or {}
        pair = {k: (dk_ref[k], dk_cand[k]) for k in ("mAP", "NDS")
                if dk_ref.get(k) is not None and dk_cand.get(k) is not None}
        per_class, per_range = {}, {}
        for cname, buckets in (ap_change.get(cand) or {}).items():
            for bname, v in buckets.items():
                if v.get("ap_ref") is None or v.get("ap_cand") is None:
                    continue
                if bname == "all":
                    per_class[cname] = (v["ap_ref"], v["ap_cand"])
                else:
                    per_range[(cname, bname)] = (v["ap_ref"], v["ap_cand"])
        frames = [(r, next((c for c in r.candidates if c.candidate == cand), None)) for r in results]
        dets = [c.detections for _, c in frames if c is not None]
        diff = diff_detections(ref_boxes, boxes(cand), names, max_dist=settings.max_dist) if ran else None
        heads = {h: tuple(p.rel_rmse for _, c in frames if c is not None for p in c.probes
                          if p.probe == h and p.status != "missing") for h in head_outputs()}
        verdicts = {rf.index: next((v for v in rf.verdicts if v.candidate == cand), None) for rf in ranked}
        diverged = tuple(r.token for r in results if r.status == "failed" or verdicts.get(r.index) is None
                         or verdicts[r.index].outcome is Outcome.DIVERGED)
        out.append(CandidateFigures(
            cand, ref, map=pair.get("mAP"), nds=pair.get("NDS"), ap_per_class=per_class, ap_per_range=per_range,
            match=(sum(d.matched for d in dets), sum(d.num_ref for d in dets), sum(d.num_cand for d in dets))
            if dets else None,
            centre_shifts=tuple(diff.pairs.centre_shift.tolist()) if diff is not None else None,
            yaw_changes=tuple(diff.pairs.yaw_change.tolist()) if diff is not None else None,
            head_errors={h: v for h, v in heads.items() if v}, frames=len(results), diverged_frames=diverged))
    return tuple(out)

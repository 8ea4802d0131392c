"""Metrics over the swept set: mAP/NDS per backend through `eval/devkit.py` (nuscenes-devkit, as `cpdebug eval`),
and per class x distance bucket each candidate's AP change against the reference with a paired bootstrap
confidence interval over frames; with several candidates, the chain of steps (torch -> ort -> ort-cpu-fp16 ...)
so that backend error and precision error are told apart.

The bootstrap needs AP thousands of times, so it is computed here in numpy exactly as the devkit's `accumulate`
and `calc_ap` do (center distance, greedy by score within each sample, 101 recall points, min recall and
precision 0.1, mean over the thresholds 0.5/1/2/4 m): matching never crosses frames, so each frame's
true-positive flags are computed once here (`frame_tables`, as the frames come back) and a resample's AP is
worked out of them in `bootstrap.py`. Resampling is seeded: the same sweep gives the same intervals. On a host with
cores to spare the devkit's matching (frame by frame as they come: `devkit_lanes.py`) and the resamples run in a
process pool started with the sweep (`process_pool`).
"""

from __future__ import annotations

import math

import numpy as np

from cp_debug.errors import CpDebugError
from cp_debug.eval.devkit import DIST_THS
from cp_debug.eval.greedy import true_positives
from cp_debug.sweep import kept
from cp_debug.sweep.bootstrap import Bootstrap, frame_row
from cp_debug.sweep.devkit_lanes import evaluate_lanes, frames_matches, lane_error
from cp_debug.sweep.records import DISTANCE_BUCKETS, FrameResult, SweepSettings

BUCKETS = (("all", 0.0, math.inf),) + tuple((name, lo, hi) for lo, hi, name in DISTANCE_BUCKETS)
CONFIDENCE = 0.95
_THRESHOLDS = np.asarray(DIST_THS, dtype=np.float64)
MATCH_BATCH = 32  # frames a task of the devkit's matching worked out ahead (`devkit_lanes.py`) in the metrics' pool
SPARE_CORES = 8  # a host with this many cores or more works the metrics out in processes of their own (the devkit's
MAX_PROCESSES = 16  # matching, the bootstrap's pairs): at most the host's cores less two, and this many


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
                tp = true_positives(dist, _THRESHOLDS)  # the devkit's greedy matching, compiled (eval/greedy.py)
            out[(c, name)] = (len(g), scores, tp)
    return out


def _interval(values: list[float]) -> list[float] | None:
    arr = np.asarray([v for v in values if not math.isnan(v)])
    if arr.size == 0:
        return None
    a = (1 - CONFIDENCE) / 2
    return [float(np.quantile(arr, a)), float(np.quantile(arr, 1 - a))]


class MetricsAhead:
    """What the metrics over the set need of each frame, worked out on one helper thread while the frames still run
    (issue 71: the metrics ran alone after the last shard, 22 s of a 300-frame awml-base sweep on two H100s):
    each returned frame's TP tables, and the devkit's import, begun once the frames run (`begin`): not beside the
    start's own imports — the devkit's OpenCV undid the `sys.path` entry of Ray's, imported meanwhile on the main
    thread (issue 87, `cp_debug/imports.py`). `sweep_metrics(…, ahead=)` takes what is ready and works out the rest
    (resumed frames) itself; the numbers are the same either way."""

    def __init__(self, settings: SweepSettings):
        import os
        from concurrent.futures import ThreadPoolExecutor

        from cp_debug.eval.devkit import default_range

        cfg = settings.config()
        self.lanes = list(settings.backends)
        self.names, self.reach = tuple(cfg.class_names), default_range(cfg.point_cloud_range)
        self.n_classes = len(self.names)
        self.tables: dict[str, dict] = {}
        self.keys = table_keys(self.n_classes)
        self.laid: dict[str, dict] = {}  # token -> lane -> `bootstrap.frame_row`, for the pool's bootstrap
        self.samples: dict[str, tuple] = {}  # token -> `frame_samples`, made as the frames come
        self._waiting: list[tuple] = []  # frames not yet handed to the pool for the devkit's matching
        self._matched: list = []  # the pool's futures of them
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-metrics")
        # where the host has cores to spare (a GPU host), the devkit's matching (frame by frame: `devkit_lanes.py`)
        # and the bootstrap's pairs run in processes of their own (the devkit's accumulate is pure Python: each
        # lane's alone took ~25 s of a 1000-frame awml-base sweep's 30 s after its frames, H100 host); started now,
        # so their imports are paid while the frames run
        self.processes, self.workers, self.clean = None, 0, False
        cores = len(os.sched_getaffinity(0))
        if cores >= SPARE_CORES:  # in the server, the pool the sweep before left (`kept.py`), its imports done
            self.workers = workers = max(1, min(4 * len(self.lanes) * self.n_classes, cores - 2, MAX_PROCESSES))
            pool = kept.take("metrics-pool", workers)
            self.processes = pool if pool is not None and not getattr(pool, "_broken", False) else \
                process_pool(workers)

    def begin(self) -> None:
        """The devkit imported on the helper (through `imports.load`), ahead of the frames' tables: called once the
        sweep's start (Ray's, the sessions', a user's file) has imported what it imports."""
        self._pool.submit(_import_devkit)

    def put(self, token: str, tables: dict) -> None:
        """A frame's tables worked out elsewhere (`frame_tables` in a Ray actor, beside its frames): `add` of that
        frame then has nothing left to do."""
        self.tables[token] = tables

    def add(self, r: FrameResult) -> None:
        if _usable(r, self.lanes):
            self._pool.submit(self._add, r, r.token not in self.tables)

    def _add(self, r: FrameResult, tables: bool) -> None:
        """On the helper: the frame's TP tables (where no actor put them), its boxes as the devkit's evaluation
        reads them and, with a pool, the frame handed to the pool for the devkit's matching, a batch at a time."""
        if tables:
            self.tables[r.token] = frame_tables(r, self.lanes, self.n_classes)
        made = self.tables.get(r.token)
        if self.processes is not None and made is not None:  # laid out now, not after the last frame
            self.laid[r.token] = {lane: frame_row(made[lane], self.keys) for lane in self.lanes}
        try:
            gt, dets = self.samples[r.token] = frame_samples(r, self.lanes)
        except CpDebugError:  # boxes and labels that do not pair: `_devkit` says so, making them again
            return
        if self.processes is not None:  # the devkit's matching, in the pool while the frames run
            self._waiting.append((r.token, gt, dets))
            if len(self._waiting) >= MATCH_BATCH:
                self._hand(MATCH_BATCH)

    def _hand(self, size: int) -> None:
        waiting, self._waiting = self._waiting, []
        for i in range(0, len(waiting), size):
            self._matched.append(self.processes.submit(frames_matches, waiting[i:i + size], self.names, self.reach))

    def matches(self) -> dict[str, dict[str, dict | None]] | None:
        """lane -> token -> the devkit's matching of the frame (`devkit_lanes.frames_matches`), once every frame's
        is worked out; None where there is no pool or a batch failed (the frames are then matched after the last
        one)."""
        if self.processes is None:
            return None
        out: dict[str, dict] = {lane: {} for lane in self.lanes}
        try:
            self._hand(2)  # the last frames, a few a process
            for future in self._matched:
                for lane, by_token in future.result().items():
                    out[lane].update(by_token)
        except Exception:  # noqa: BLE001 - a broken pool: the lanes' evaluation says so, or matches them again
            return None
        return out

    def done(self) -> dict[str, dict]:
        """Every table worked out so far, once the helper has finished what it was given."""
        self._pool.shutdown(wait=True)
        return self.tables

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            pool, self.processes = self.processes, None
            if self.clean:  # every part it was given is done: kept for the server's next sweep, else shut down
                kept.put("metrics-pool", self.workers, pool, _shut_down)
            else:
                _shut_down(pool)


def _shut_down(pool) -> None:
    pool.shutdown(wait=False, cancel_futures=True)


def process_pool(workers: int):
    """The metrics' pool: `workers` spawned processes, all started now, each importing the devkit as it starts (3.8 s
    of imports on a GPU host). An import task handed to the pool instead may go to a process that has already
    imported it, and leave another to import at its first part of the metrics, after the frames."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_import_devkit)
    for _ in range(workers):  # a task submitted while no process is idle starts one more
        pool.submit(int)
    return pool


def _import_devkit() -> None:
    """The devkit's 3.8 s of imports, paid while the frames run (OpenCV's with them: through `imports.load`)."""
    from cp_debug.imports import load

    try:
        load("nuscenes.eval.detection.algo")
    except Exception:  # noqa: BLE001 - missing or broken: `_devkit` says so in its own words later
        pass


def table_keys(n_classes: int) -> list[tuple]:
    """The (class, bucket) keys of a frame's tables, in their order."""
    return [(c, name) for c in range(n_classes) for name, _, _ in BUCKETS]


def frame_tables(r: FrameResult, lanes: list[str], n_classes: int) -> dict | None:
    """lane -> the frame's TP tables (`_tables`), what the metrics over the set need of it; None for a frame they
    leave out (failed, or without ground truth)."""
    if not _usable(r, lanes):
        return None
    return {b: _tables(r.gt, r.boxes[b], n_classes) for b in lanes}


def frame_samples(r: FrameResult, lanes: list[str]) -> tuple:
    """(ground truth, lane -> detections) of a frame as `SampleBoxes`, what the devkit's evaluation reads of it."""
    from cp_debug.eval.boxes import SampleBoxes

    gt = SampleBoxes(r.gt["boxes"], r.gt["labels"], num_points=r.gt.get("num_points"))
    return gt, {b: SampleBoxes(r.boxes[b]["boxes"], r.boxes[b]["labels"], r.boxes[b]["scores"]) for b in lanes}


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
    devkit = _devkit(frames, lanes, cfg, *((ahead.processes, ahead.workers, ahead.matches(), ahead.samples)
                                           if ahead is not None else ()))
    out: dict = {"frames": len(frames), "bootstrap": bootstrap, "confidence": CONFIDENCE,
                 "buckets": [b[0] for b in BUCKETS], "devkit": devkit}
    per_frame = [ready.get(r.token) or frame_tables(r, lanes, len(names)) for r in frames]
    tables = {b: [t[b] for t in per_frame] for b in lanes}
    n = len(frames)
    keys = table_keys(len(names))
    laid = ahead.laid if ahead is not None else {}
    boot = Bootstrap(tables, n, settings.seed, bootstrap, keys,
                     {lane: [laid.get(r.token, {}).get(lane) for r in frames] for lane in lanes})
    ref = lanes[0]
    gt = {key: sum(t[key][0] for t in tables[ref]) for key in keys}
    boot.warm(sorted({(lane, key) for cand in lanes[1:] for key in keys if gt[key] for lane in (ref, cand)}
                     | {(lane, (c, "all")) for lane in lanes for c in range(len(names))}),
              ahead.processes if ahead is not None else None, ahead.workers if ahead is not None else 1)
    out["ap_change"] = {cand: _ap_change(boot, ref, cand, names, gt) for cand in lanes[1:]}
    out["devkit"] = dk = {b: v.result() if hasattr(v, "result") else v for b, v in devkit.items()}
    chain = []
    for a, b in zip(lanes, lanes[1:]):
        per_sample = {lane: list(zip(*(boot.resamples(lane, (c, "all")) for c in range(len(names)))))
                      for lane in (a, b)}
        deltas = [_mean_ap(vb) - _mean_ap(va) for va, vb in zip(per_sample[a], per_sample[b])]
        d = (_mean_ap([boot.whole(b, (c, "all")) for c in range(len(names))])
             - _mean_ap([boot.whole(a, (c, "all")) for c in range(len(names))]))
        step = {"from": a, "to": b, "delta_map": d, "ci": _interval(deltas)}
        if dk.get(a) and dk.get(b):
            step["devkit_delta_map"] = _sub(dk[b].get("mAP"), dk[a].get("mAP"))
            step["devkit_delta_nds"] = _sub(dk[b].get("NDS"), dk[a].get("NDS"))
        chain.append(step)
    out["chain"] = chain
    if ahead is not None:
        ahead.clean = True
    return out


def _ap_change(boot: Bootstrap, ref: str, cand: str, names: tuple, gt: dict) -> dict:
    """Per class and bucket with ground truth: the reference's and candidate's AP, the change and its bootstrap
    interval."""
    per_class: dict = {}
    for c, cname in enumerate(names):
        per_bucket = {}
        for bname, _, _ in BUCKETS:
            key = (c, bname)
            if gt[key] == 0:
                continue
            a, b = boot.whole(ref, key), boot.whole(cand, key)
            deltas = [x - y for x, y in zip(boot.resamples(cand, key), boot.resamples(ref, key))]
            per_bucket[bname] = {"ap_ref": a, "ap_cand": b, "delta": b - a, "ci": _interval(deltas),
                                 "num_gt": gt[key]}
        if per_bucket:
            per_class[cname] = per_bucket
    return per_class


def _mean_ap(values) -> float:
    """The mean of the classes' APs that exist (a class without ground truth in a resample has none)."""
    aps = [a for a in values if not math.isnan(a)]
    return float(np.mean(aps)) if aps else math.nan


def _sub(a, b):
    return None if a is None or b is None else a - b


def _devkit(frames: list[FrameResult], lanes: list[str], cfg, processes=None, workers: int = 0,
            matches: dict | None = None, samples: dict | None = None) -> dict:
    """mAP, NDS and TP errors per lane from nuscenes-devkit (`eval/devkit.py`); a lane it cannot evaluate gets the
    one-line reason. With `processes` (a process pool of `workers`), each lane is summed up from its frames'
    matching (`devkit_lanes.py`) and its entry is a future the caller resolves (`.result()`): the same figures as
    `evaluate`. `matches`: the matching `MetricsAhead.matches` worked out while the frames ran; `samples`: token ->
    `frame_samples`, made as they came (a frame without is made here)."""
    from cp_debug.eval.devkit import check_inputs, default_range

    samples = samples or {}
    made = [samples.get(r.token) or frame_samples(r, lanes) for r in frames]
    gt = {r.token: m[0] for r, m in zip(frames, made)}
    names, reach = tuple(cfg.class_names), default_range(cfg.point_cloud_range)
    out, apart = {}, {}
    for b in lanes:
        dets = {r.token: m[1][b] for r, m in zip(frames, made)}
        if processes is None:
            out[b] = _evaluate_lane(gt, dets, names, reach)
            continue
        try:
            check_inputs(gt, dets, names)
        except CpDebugError as err:
            out[b] = lane_error(err)
            continue
        apart[b] = (gt, dets)
    if apart:
        out.update(evaluate_lanes(processes, workers, apart, names, reach, matches))
    return {b: out[b] for b in lanes}


def _evaluate_lane(gt: dict, dets: dict, class_names: tuple, class_range: float) -> dict:
    from cp_debug.eval.devkit import evaluate

    try:
        return evaluate(gt, dets, class_names, class_range=class_range).to_json()
    except CpDebugError as err:
        return lane_error(err)

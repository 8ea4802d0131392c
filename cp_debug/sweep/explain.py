"""The worst frames explained: the full bisect (root cause, hints) of the K worst frames beyond the precision
(degraded or diverged), each report
written to `DIR/bisect/<token>.json`, and the root causes counted over them. A frame whose bisect fails is a
`FrameFailure` (its one-line reason); the sweep goes on."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.bisect.result import BisectReport
from cp_debug.data.frames import Frame
from cp_debug.errors import CpDebugError
from cp_debug.sweep.rank import RankedFrame

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.data.frames import GroundTruth
    from cp_debug.data.point_files import LoadedPoints


@dataclass(frozen=True)
class FrameFailure:
    """A frame the bisect could not explain, and why (one line)."""

    token: str
    reason: str

    def to_json(self) -> dict:
        return {"error": self.reason}


def frame_scan(frame: Frame, cfg) -> "tuple[LoadedPoints, GroundTruth | None]":
    """The scan bisect runs for a sweep's frame: the frame's points read as a point file of them would be (so the
    report's `point_cloud` facts are those of the points the sweep ran), named by the frame's token; and its ground
    truth (None where the frame has none), which the BEV pictures draw."""
    from cp_debug.data.point_files import load_point_array

    loaded = frame.load(cfg)
    points = np.asarray(loaded.points, dtype=np.float32)
    return load_point_array(points, cfg, f"sweep frame {frame.token}"), loaded.truth


def bisect_frame(settings, scan: "LoadedPoints", candidate: str, truth: "GroundTruth | None" = None) -> BisectReport:
    """The bisect report of one frame's scan, reference against `candidate` (`truth`: the scan's ground truth)."""
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bisect.engine import BisectEngine, BisectOptions

    subject = settings.recipe.make_frame_subject(settings.preset, checkpoint=settings.checkpoint, points=scan,
                                                 seed=settings.seed, random_weights=settings.random_weights,
                                                 int8=settings.int8_dir, truth=truth)
    ref = settings.backends[0]
    engine = BisectEngine(subject, (ref, BackendSpec.parse(ref)), [(candidate, BackendSpec.parse(candidate))],
                          BisectOptions(level=settings.level, deterministic=settings.deterministic, seed=settings.seed,
                                        cudnn_algo=settings.cudnn_algo,
                                        atol=settings.atol, rtol=settings.rtol,
                                        tolerance_mode=settings.tolerance_mode))
    try:
        return engine.run()
    finally:
        engine.close()


def bisect_worst(opts, ranked: list[RankedFrame], frames: list[Frame], step
                 ) -> tuple[dict[str, BisectReport | FrameFailure], list[RankedFrame]]:
    """Bisect the `opts.bisect_top` worst frames beyond the precision, degraded or diverged (their worst candidate);
    reports (or failures) by token, and the ranked frames with `root_cause` filled in. A deployed folder
    (`SPEC@DIR`) is bisected on its own files."""
    cfg = opts.settings.config()
    by_token = {f.token: f for f in frames}

    def bisect_one(r: RankedFrame) -> BisectReport:
        scan, truth = frame_scan(by_token[r.token], cfg)
        return bisect_frame(opts.settings, scan, r.candidate, truth)

    return bisect_flagged(opts.out, ranked, opts.bisect_top, step, bisect_one, opts.runs_on)


def bisect_flagged(out: str | Path, ranked: list[RankedFrame], top: int, step,
                   bisect_one: Callable[[RankedFrame], BisectReport], runs_on: dict | None = None,
                   also: Callable[[RankedFrame], bool] | None = None
                   ) -> tuple[dict[str, BisectReport | FrameFailure], list[RankedFrame]]:
    """The `top` worst flagged frames (or samples), each bisected on its worst candidate by `bisect_one`: the reports
    (a `CpDebugError` becomes the frame's `FrameFailure`) by token, each written to `out/bisect/` (`bisected`, with
    `runs_on`: what the command ran on, as `cpdebug bisect`'s JSON says it), and the ranked list with their root
    causes; the one loop of CenterPoint's and the sample sweep's (`also`: the unflagged frames bisected too)."""
    reports: dict[str, BisectReport | FrameFailure] = {}
    ranked_out = list(ranked)
    for r in [r for r in ranked if (r.flagged or (also is not None and also(r))) and r.candidate][:top]:
        with step(f"bisecting {r.token} (rank {r.rank}, {r.candidate})") if step else contextlib.nullcontext():
            try:
                rep = bisect_one(r)
            except CpDebugError as err:
                reports[r.token] = FrameFailure(r.token, str(err).splitlines()[0])
                continue
        reports[r.token] = rep
        ranked_out[ranked_out.index(r)] = bisected(out, r, rep, runs_on)
    return reports, ranked_out


def bisected(out: str | Path, r: RankedFrame, rep: BisectReport, runs_on: dict | None = None) -> RankedFrame:
    """`rep` written whole to `out/bisect/<token>.json` (with `runs_on` where given), and `r` given its candidate's
    root cause and hint."""
    from cp_debug.files import write_json

    doc = rep if runs_on is None else {**rep.to_json(), "runs_on": runs_on}
    write_json(Path(out) / "bisect" / f"{r.token}.json", doc, parents=True)
    rc = next((c.root_cause for c in rep.candidates if c.label == r.candidate), None)
    tips = rc.tipped_by if rc else ()  # a near tie several layers each tip: no single root cause to count
    return replace(r, bisected=True, root_cause=rc.probe if rc and not tips else None, hint=rc.hint if rc else None,
                   near_tie=tips)


def root_cause_counts(ranked: list[RankedFrame]) -> dict:
    """{"bisected": n, "counts": {probe: frames}, "text": "root cause X on a of n bisected frames"}; frames whose
    decision sits at a near tie several layers each tip (no single root cause) counted apart, under "near_tie"."""
    bisected = [r for r in ranked if r.bisected]
    counts = Counter(r.root_cause for r in bisected if r.root_cause)
    ties = sum(1 for r in bisected if r.near_tie)
    said = []
    if counts:
        top, k = counts.most_common(1)[0]
        said.append(f"root cause `{top}` on {k} of {len(bisected)} bisected frames")
    if ties:
        said.append(f"no single root cause on {ties} of {len(bisected)} bisected frames (a decision at a near tie "
                    "several layers each tip alone)")
    out = {"bisected": len(bisected), "counts": dict(counts.most_common()), "text": "; ".join(said) or None}
    return {**out, "near_tie": ties} if ties else out

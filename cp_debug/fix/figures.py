"""The figures of one candidate on the frames a fix is judged on, and the progress helpers of a fix.

Frames are held-out synthetic scenes (`data.frames.HeldOutSet`: never training or calibration seeds) or the user's
scenes with their ground truth (`data.frames.ScenesSet`: an info file), loaded once and named by their range and
tokens, so `fix --check` rebuilds exactly the same ones. A candidate is judged by
its head maps against the reference's on the same frames: per frame the worst output's rel. RMSE
(`ptq.sensitivity.rel_rmse`), and from the decoded boxes the reference boxes it loses or adds
(`eval.detection_diff`) and nuScenes mAP/NDS (`eval.devkit`) against the ground truth; and per frame the outcome of
the noise model (a `FrameVerdict`: each head map against the rounding the candidate's precision brings, the decoded
boxes at the score threshold or beyond it: `compare/noise.py`, as bisect and sweep judge). How a recipe's head maps
decode and are judged is its fix plug-in's (CenterPoint's `recipes/centerpoint/fix/judge.py`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from cp_debug.compare.noise import Outcome, worst as worst_outcome
from cp_debug.data.frames import FrameSet


def progress_step(progress, text: str):
    """`progress.step(text)`, or nothing without a progress object."""
    import contextlib

    return progress.step(text) if progress is not None else contextlib.nullcontext()


def progress_bar(progress, text: str, total: int):
    """`progress.bar(text, total)` (yields `advance`), or a context yielding a no-op without a progress object."""
    import contextlib

    if progress is not None and hasattr(progress, "bar"):
        return progress.bar(text, total)
    return contextlib.nullcontext(lambda n=1, **fields: None)


def step_printer(progress):
    """An `on_step` for `search.search_fix` that notes each checked run on `progress` (None without one)."""
    if progress is None or not hasattr(progress, "note"):
        return None
    t0 = time.perf_counter()
    count = [0]

    def on_step(step) -> None:  # a TraceStep; figures: search.Checked
        count[0] += 1
        f = step.figures.figures
        figs = [f"worst rel. RMSE {f.worst:.3g}"]
        if f.outcome is not None:
            figs.append(f.outcome.words)
        if f.lost_boxes is not None:
            figs.append(f"lost {f.lost_boxes}")
        if f.map_drop is not None:
            figs.append(f"mAP drop {f.map_drop:+.4f}")
        verdict = "holds" if step.passed else "fails"
        progress.note(f"run {count[0]}: {len(step.experiment)} kept ({step.phase}) {verdict} on "
                      f"{step.figures.checked} frames; "
                      f"{', '.join(figs)}; {step.seconds:.1f} s (search {time.perf_counter() - t0:.0f} s)")

    return on_step


@dataclass(frozen=True)
class FrameVerdict:
    """One frame of a candidate judged by the noise model: its outcome and why (the worst head map, the boxes)."""

    outcome: Outcome
    reason: str


@dataclass(frozen=True)
class Figures:
    """A candidate on some frames: worst output rel. RMSE per frame, and where boxes were decoded, the reference
    boxes lost and added and the mAP drop vs the reference (mAP only on the whole set); where judged by the noise
    model, each frame's verdict (`verdicts`, None where not judged)."""

    frames: tuple[int, ...]
    rel_rmse: tuple[float, ...]  # per frame, worst head output
    worst_output: tuple[str, ...]
    lost_boxes: int | None = None
    added_boxes: int | None = None
    map_drop: float | None = None
    extra: dict = field(default_factory=dict, compare=False)
    verdicts: tuple[FrameVerdict, ...] | None = None

    @property
    def outcome(self) -> Outcome | None:
        """The worst frame's outcome (None where the frames were not judged by the noise model)."""
        return None if self.verdicts is None else worst_outcome(v.outcome for v in self.verdicts)

    @property
    def worst(self) -> float:
        """The largest rel. RMSE over the frames; NaN when a frame's is (its output not finite: nothing is worse).
        Python's `max` would skip a NaN that is not first, and a frame whose heads overflowed would pass."""
        if any(v != v for v in self.rel_rmse):
            return float("nan")
        return max(self.rel_rmse, default=0.0)

    def to_json(self) -> dict:
        return {"frames": list(self.frames), "worst_rel_rmse": self.worst, "rel_rmse": list(self.rel_rmse),
                "worst_output": list(self.worst_output), "lost_boxes": self.lost_boxes,
                "added_boxes": self.added_boxes, "map_drop": self.map_drop, **self.extra,
                **({} if self.verdicts is None else {
                    "outcome": self.outcome.value, "outcomes": [v.outcome.value for v in self.verdicts],
                    "outcome_reasons": [v.reason for v in self.verdicts]})}


def frame_errors(ref: Sequence[Mapping[str, np.ndarray]], got: Sequence[Mapping[str, np.ndarray]]
                 ) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """Per frame: the worst head output's rel. RMSE and its name."""
    from cp_debug.compare.pooled import rel_rmse

    values, names = [], []
    for r, g in zip(ref, got):
        errs = {n: rel_rmse([r[n]], [g[n]]) for n in r}
        name = max(errs, key=lambda k: (errs[k] != errs[k], errs[k]))  # NaN counts as worst
        values.append(float(errs[name]))
        names.append(name)
    return tuple(values), tuple(names)


def decoded_boxes(frames: FrameSet, indices: Sequence[int], heads: Sequence, decode: Callable) -> dict:
    """{token: SampleBoxes} of the frames' outputs `heads` decoded by `decode(head)` → Detections (the recipe's)."""
    from cp_debug.eval.boxes import SampleBoxes

    return {frames.frames[i].token: SampleBoxes.from_detections(decode(h)) for i, h in zip(indices, heads)}


def evaluation(cfg, frames: FrameSet, dets: Mapping):
    """nuScenes DetectionEvaluation of `dets` against the frames' ground truth."""
    from cp_debug.eval.boxes import ground_truth
    from cp_debug.eval.devkit import default_range, evaluate

    gt = {t: g for t, g in ground_truth(frames.frames, cfg).items() if t in dets}
    return evaluate(gt, dets, cfg.class_names, class_range=default_range(cfg.point_cloud_range))


def box_diff(cfg, ref_dets: Mapping, dets: Mapping) -> tuple[int, int]:
    """(reference boxes lost, boxes added) of `dets` against `ref_dets`."""
    from cp_debug.eval.detection_diff import diff_detections

    d = diff_detections(ref_dets, dets, cfg.class_names)
    return int(d.total.missing), int(d.total.extra)


def class_ap_change(cfg, frames: FrameSet, ref_dets: Mapping, dets: Mapping, bootstrap: int = 20,
                    seed: int = 0) -> dict:
    """Per class: AP of the reference and of the candidate and their difference, with a 90 % paired bootstrap
    interval over frames (`bootstrap` resamples; none when 0 or one frame)."""
    ref_ev, ev = evaluation(cfg, frames, ref_dets), evaluation(cfg, frames, dets)
    ref_ap = {c.name: c.ap for c in ref_ev.per_class}
    out = {c.name: {"reference_ap": ref_ap[c.name], "ap": c.ap, "change": c.ap - ref_ap[c.name], "interval": None}
           for c in ev.per_class}
    tokens = [t for t in frames.tokens if t in dets]
    if bootstrap < 1 or len(tokens) < 2:
        return out
    from cp_debug.eval.boxes import ground_truth

    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {name: [] for name in out}
    truth = ground_truth(frames.frames, cfg)
    for _ in range(bootstrap):
        pick = rng.integers(0, len(tokens), len(tokens))
        names = [f"{tokens[i]}#{k}" for k, i in enumerate(pick)]  # resampled frames keep distinct tokens
        gt = {n: truth[tokens[i]] for n, i in zip(names, pick)}
        a = _ap(cfg, gt, {n: ref_dets[tokens[i]] for n, i in zip(names, pick)})
        b = _ap(cfg, gt, {n: dets[tokens[i]] for n, i in zip(names, pick)})
        for name in samples:
            if name in a and name in b:
                samples[name].append(b[name] - a[name])
    for name, values in samples.items():
        finite = [v for v in values if v == v]
        if finite:
            out[name]["interval"] = [float(np.percentile(finite, 5)), float(np.percentile(finite, 95))]
    return out


def _ap(cfg, gt: Mapping, dets: Mapping) -> dict[str, float]:
    from cp_debug.eval.devkit import default_range, evaluate

    ev = evaluate(gt, dets, cfg.class_names, class_range=default_range(cfg.point_cloud_range))
    return {c.name: c.ap for c in ev.per_class}

"""The verification of a fix: the written ONNX pair against the FP32 pair, in ONNX Runtime, over a frame set.

What a deployment runs, not what the search ran (the INT8 search judges fake-quant torch; this judges the Q/DQ
files). Per lane (the plain candidate — every node FP16 / every layer INT8 — where given, and the fix): the
worst head output's rel. RMSE per frame, reference boxes lost and added, mAP/NDS against the ground truth; the
fix's per-class AP change with a paired bootstrap interval; each frame's outcome by the noise model of the
candidate's precision (`figures.frame_verdict`: within precision, degraded, diverged), recorded whatever the target,
which it decides where the target is within precision; and each stage's median latency in these runs (the
latency cost of the kept nodes on this backend: fixed minus plain). On the search's own frames the pairs the search
ran are taken from its `pair_runs.PairRuns`, seconds included (an encoder both lanes share has one timing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cp_debug.data.frames import FrameSet
from cp_debug.fix.figures import (Figures, box_diff, class_ap_change, detections, evaluation, frame_errors,
                                  frame_verdict)
from cp_debug.fix.targets import FixTarget


@dataclass(frozen=True)
class Lane:
    figures: Figures
    map: float
    nds: float
    latency_ms: dict  # stage -> median ms over the frames (the first frame left out when there are several)

    def to_json(self) -> dict:
        return {**self.figures.to_json(), "mAP": self.map, "NDS": self.nds, "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class Verification:
    target: FixTarget
    frames: FrameSet
    reference_map: float
    reference_nds: float
    plain: Lane | None
    fixed: Lane
    per_class: dict
    device: str
    precision: str = "fp16"  # what the frames' outcomes are judged at: the candidate's

    @property
    def holds(self) -> bool:
        f = self.fixed.figures
        return self.target.holds(f.worst, f.map_drop, f.lost_boxes, f.outcome)

    @property
    def latency_cost_ms(self) -> dict | None:
        if self.plain is None:
            return None
        return {k: self.fixed.latency_ms[k] - self.plain.latency_ms[k] for k in self.fixed.latency_ms}

    def to_json(self) -> dict:
        return {"holds": self.holds, "target": self.target.to_json(), "frames": self.frames.to_json(),
                "tolerance_mode": self.target.mode, "precision": self.precision,
                "outcome": self.fixed.figures.outcome.value,
                "device": self.device, "reference": {"mAP": self.reference_map, "NDS": self.reference_nds},
                "plain": self.plain.to_json() if self.plain else None, "fixed": self.fixed.to_json(),
                "per_class_ap_change": self.per_class,
                "latency_cost_ms": self.latency_cost_ms,
                "latency_note": "median per stage over this verification's frames, ONNX Runtime on this machine"}


def verify_pair(cfg, frames: FrameSet, target: FixTarget, reference: Sequence, fixed: Sequence,
                plain: Sequence | None = None, *, precision: str, device: str = "cpu", bootstrap: int = 20,
                progress=None, runs=None) -> Verification:
    """Run the FP32 `reference` pair, the `plain` candidate pair (optional) and the `fixed` pair (each a
    (voxel encoder, backbone) of paths or ModelProtos) over `frames` and judge the fix against `target` (each
    frame's outcome at `precision`, the candidate's: fp16 or int8). `runs`: a `pair_runs.PairRuns` that ran
    pairs on these very frames on this device (the search's): what it kept is taken, not run again."""
    from cp_debug.fix.figures import progress_step
    from cp_debug.fix.pair_runs import PairRuns

    if runs is None or not runs.serves(frames, device):
        runs = PairRuns(cfg, frames, device)
    every = range(len(frames))
    with progress_step(progress, f"verification: FP32 reference on {len(frames)} frame(s)"):
        ref_heads, _ = runs.heads(reference[0], reference[1])
        ref_dets = detections(cfg, frames, every, ref_heads)
        ref_ev = evaluation(cfg, frames, ref_dets)

    def lane(pair, name):
        with progress_step(progress, f"verification: {name} on {len(frames)} frame(s)"):
            heads, seconds = runs.heads(pair[0], pair[1])
            errs, names = frame_errors(ref_heads, heads)
            dets = detections(cfg, frames, every, heads)
            ev = evaluation(cfg, frames, dets)
            lost, added = box_diff(cfg, ref_dets, dets)
            verdicts = tuple(frame_verdict(cfg, r, h, precision) for r, h in zip(ref_heads, heads))
        figs = Figures(tuple(every), errs, names, lost, added, ref_ev.mean_ap - ev.mean_ap, verdicts=verdicts)
        return Lane(figs, ev.mean_ap, ev.nds, _median_ms(seconds)), dets

    plain_run = lane(plain, "plain candidate") if plain is not None else None
    # a fix that keeps nothing is the plain pair, the very same graphs: its lane is the plain one, not run twice
    same = plain is not None and len(plain) == len(fixed) and all(a is b for a, b in zip(plain, fixed))
    fixed_lane, fixed_dets = plain_run if same else lane(fixed, "fix")
    plain_lane = plain_run[0] if plain_run is not None else None
    with progress_step(progress, "verification: per-class AP change"):
        per_class = class_ap_change(cfg, frames, ref_dets, fixed_dets, bootstrap)
    return Verification(target, frames, ref_ev.mean_ap, ref_ev.nds, plain_lane, fixed_lane, per_class, device,
                        precision)


def _median_ms(seconds: dict) -> dict:
    return {stage: float(np.median(v[1:] if len(v) > 1 else v)) * 1e3 for stage, v in seconds.items()}

"""The verification of CenterPoint's fix: the written ONNX pair against the FP32 pair, in ONNX Runtime, over a frame
set (`fix/verify.py` says what is measured; its `Verification` and `Lane` are what every recipe's fix records). On the
search's own frames the pairs the search ran are taken from its `pair_runs.PairRuns`, seconds included (an encoder
both lanes share has one timing).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cp_debug.data.frames import FrameSet
from cp_debug.fix.figures import Figures, box_diff, class_ap_change, evaluation, frame_errors
from cp_debug.fix.targets import FixTarget
from cp_debug.fix.verify import Lane, Verification
from cp_debug.recipes.centerpoint.fix.judge import detections, frame_verdict


def verify_pair(cfg, frames: FrameSet, target: FixTarget, reference: Sequence, fixed: Sequence,
                plain: Sequence | None = None, *, precision: str, device: str = "cpu", bootstrap: int = 20,
                progress=None, runs=None) -> Verification:
    """Run the FP32 `reference` pair, the `plain` candidate pair (optional) and the `fixed` pair (each a
    (voxel encoder, backbone) of paths or ModelProtos) over `frames` and judge the fix against `target` (each
    frame's outcome at `precision`, the candidate's: fp16 or int8). `runs`: a `pair_runs.PairRuns` that ran
    pairs on these very frames on this device (the search's): what it kept is taken, not run again."""
    from cp_debug.fix.figures import progress_step
    from cp_debug.recipes.centerpoint.fix.pair_runs import PairRuns

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

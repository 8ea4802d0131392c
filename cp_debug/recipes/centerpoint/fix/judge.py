"""How CenterPoint's fix judges a candidate pair by its head maps (its `fix` plug-in's, `fix/search.py` and
`fix/figures.py` holding what every recipe's fix shares): the maps decoded into each frame's boxes (`detections`),
each frame judged by the noise model (`frame_verdict`: each head map against the rounding the candidate's precision
brings, the decoded boxes through the recipe's `detection_verdict`), the search's judge from head maps (`HeadJudge`),
and the pair's files in a written fix (`check_onnx_pair`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from cp_debug.compare.noise import Outcome, worst as worst_outcome
from cp_debug.data.frames import FrameSet
from cp_debug.errors import BadInputError
from cp_debug.fix.figures import Figures, FrameVerdict, box_diff, decoded_boxes, evaluation, frame_errors
from cp_debug.fix.targets import FixTarget


def frame_verdict(cfg, ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], precision: str
                  ) -> FrameVerdict:
    """One frame's head maps judged against `precision`'s rounding (`compare.noise.judge`, per map: NaN/Inf is
    diverged, beyond the budget degraded) and its decoded boxes (`compare.noise.judge_boxes` through the recipe's
    `detection_verdict`: lost/added at the score threshold explained, moved or rescored beyond it degraded)."""
    from cp_debug.compare.diff import TensorDiff
    from cp_debug.compare.noise import judge
    from cp_debug.recipes.centerpoint.detection_verdict import detection_verdict

    ref = {n: np.asarray(v, np.float32) for n, v in ref.items()}
    got = {n: np.asarray(got[n], np.float32) for n in ref}
    heads = {n: judge(TensorDiff.from_arrays(n, ref[n], got[n]), precision) for n in ref}
    name = max(heads, key=lambda n: (heads[n].outcome.severity, _finite_or_inf(heads[n].noise_ratio)))
    if heads[name].outcome is Outcome.DIVERGED:  # NaN/Inf or shape: decoding adds nothing
        return FrameVerdict(Outcome.DIVERGED, f"{name}: {heads[name].reason}")
    boxes = detection_verdict(cfg)(ref, got).judge(precision)
    outcome = worst_outcome((heads[name].outcome, boxes.outcome))
    return FrameVerdict(outcome, f"worst head map {name}: {heads[name].reason}; {boxes.reason}")


def _finite_or_inf(x: float) -> float:
    return float("inf") if x != x else x


def detections(cfg, frames: FrameSet, indices: Sequence[int], heads: Sequence[Mapping[str, np.ndarray]]) -> dict:
    """{token: SampleBoxes} of decoded head maps."""
    from cp_debug.models.centerpoint.decode import decode

    return decoded_boxes(frames, indices, heads, lambda h: decode(h, cfg))


def check_onnx_pair(root: str | Path, names: Sequence[str] | None = None) -> tuple[Path, Path]:
    """The pair's two file paths under `root` (`names`: the user's own file names of a fix of a deployed pair; else
    AWML's); BadInputError naming what is missing."""
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, VOXEL_ENCODER_FILE

    root = Path(root)
    paths = tuple(root / n for n in (names or (VOXEL_ENCODER_FILE, BACKBONE_FILE)))
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise BadInputError(f"{root} lacks {', '.join(missing)}: it is not a written fix (cpdebug fix --out DIR)")
    return paths


class HeadJudge:
    """A judge from head maps: `heads(keep, indices)` gives the candidate's head maps on those frames; the
    reference's are given once. Boxes are decoded only when the target needs them; mAP only on the whole set; each
    frame judged by `precision`'s noise (`frame_verdict`) where the target is within precision."""

    def __init__(self, cfg, frames: FrameSet, reference: Sequence[Mapping[str, np.ndarray]], target: FixTarget,
                 heads: Callable[[tuple[str, ...], Sequence[int]], list], precision: str):
        self.cfg, self.frames, self.reference, self.target, self.heads = cfg, frames, list(reference), target, heads
        self.precision = precision
        self._ref_dets = None
        self._ref_map = None

    def reference_detections(self) -> dict:
        if self._ref_dets is None:
            every = range(len(self.frames))
            self._ref_dets = detections(self.cfg, self.frames, every, self.reference)
        return self._ref_dets

    def reference_map(self) -> float:
        if self._ref_map is None:
            self._ref_map = evaluation(self.cfg, self.frames, self.reference_detections()).mean_ap
        return self._ref_map

    def __call__(self, keep: tuple[str, ...], indices: Sequence[int], whole: bool) -> Figures:
        indices = tuple(indices)
        got = self.heads(keep, indices)
        errs, names = frame_errors([self.reference[i] for i in indices], got)
        lost = added = drop = None
        if self.target.needs_boxes:
            dets = detections(self.cfg, self.frames, indices, got)
            ref = {k: v for k, v in self.reference_detections().items() if k in dets}
            lost, added = box_diff(self.cfg, ref, dets)
            if whole and self.target.needs_map:
                drop = self.reference_map() - evaluation(self.cfg, self.frames, dets).mean_ap
        verdicts = None
        if self.target.within_precision:
            verdicts = tuple(frame_verdict(self.cfg, self.reference[i], g, self.precision)
                             for i, g in zip(indices, got))
        return Figures(indices, errs, names, lost, added, drop, verdicts=verdicts)

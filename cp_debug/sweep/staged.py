"""The sweep worker of a recipe that runs its frames through a `FrameModel` (recipe_contract/frame_model.py, made by the
recipe's `frame_model`; TransFusion-L): every backend a `StagedPipeline` with the level's probes exposed, built once;
per frame the reference, then each candidate on the reference's decided choices (its own choice counted as flips, and
its boxes the ones it deploys), judged as the lanes of a recipe's `sweep` plug-in judge a frame
(`judge.candidate_frame`). The same interface as that plug-in's worker (its `make_worker`'s: `open`, `close`,
`run_frames`, `run_frame`, `subject`), so the executor, shards, ranking and report are one."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Iterable, Iterator

import numpy as np

from cp_debug.data.frames import Frame
from cp_debug.errors import BadInputError
from cp_debug.sweep.failures import or_failed
from cp_debug.sweep.feed import FLUSH
from cp_debug.sweep.judge import box_lists, candidate_frame, detection_delta, truth_lists
from cp_debug.sweep.records import FrameResult, SweepSettings, frame_status


def check_specs(settings: SweepSettings) -> None:
    """What a `FrameModel` sweep does not run (said before anything is written)."""
    from cp_debug.backends.spec import BackendSpec

    for label in settings.backends:
        spec = BackendSpec.parse(label)
        if spec.calibrated or spec.onnx_dir is not None:
            raise BadInputError(f"{label}: INT8, FP8 and deployed folders (SPEC@DIR) are not built for --recipe "
                                f"{settings.recipe.name}; use fp32 / fp16 backends")
    if settings.int8_dir is not None:
        raise BadInputError(f"--int8 is CenterPoint's; not for --recipe {settings.recipe.name}")


def probe_order(subject, level: str) -> tuple[list[list[str]], list[str]]:
    """(per stage, the level's probes that each backend can expose; every compared name in pipeline order: each
    stage's probes, then its outputs)."""
    per_stage, order = [], []
    for st in subject.stages:
        pm = st.probe_map()
        probes = [p for p in st.probes_at(level) if pm is not None and p in pm.tensors]
        per_stage.append(probes)
        order += probes + [o for o in st.output_names if o not in order]
    return per_stage, order


class StagedWorker:
    """Sessions built once (`open`), then `run_frame` per frame; a context manager."""

    def __init__(self, settings: SweepSettings, onnx_dir=None):
        self.settings = settings
        self.model = self.cfg = self.subject = None
        self.order: list[str] = []
        self._pipes: list = []
        self._stack: ExitStack | None = None

    def open(self) -> "StagedWorker":
        from cp_debug.backends.spec import BackendSpec
        from cp_debug.determinism import Determinism
        from cp_debug.recipe_contract.frame_model import StagedPipeline

        s = self.settings
        check_specs(s)
        self.model = s.recipe.make_frame_model(s.preset, s.checkpoint, s.seed, s.random_weights)
        self.cfg, self.subject = self.model.cfg, self.model.subject
        per_stage, self.order = probe_order(self.subject, s.level)
        if s.threads:
            import torch

            torch.set_num_threads(s.threads)
        det = Determinism(enabled=s.deterministic, seed=s.seed, conv_algo=s.cudnn_algo)
        self._stack = ExitStack()
        try:
            for label in s.backends:
                pipe = StagedPipeline(self.model, BackendSpec.parse(label), probes=per_stage, determinism=det,
                                      threads=s.threads)
                self._pipes.append(self._stack.enter_context(pipe))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self._pipes = []

    def __enter__(self) -> "StagedWorker":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def run_frames(self, items: Iterable[tuple[int, Frame]], ahead: int | None = None) -> Iterator[FrameResult]:
        """`run_frame` over (index, frame) pairs, in order (each handed back before the next is read: a `FLUSH` in
        `items` asks for nothing more)."""
        for item in items:
            if item is not FLUSH:
                yield self.run_frame(*item)

    def run_frame(self, index: int, frame: Frame) -> FrameResult:
        """One frame through every backend; any failure is a `failed` result with its one-line reason."""
        return or_failed(index, frame.token, self._compare, index, frame)

    def _compare(self, index: int, frame: Frame) -> FrameResult:
        s = self.settings
        scan = frame.load(self.cfg)
        points = np.asarray(scan.points)
        if not np.isfinite(points).all():
            raise BadInputError(f"{int((~np.isfinite(points)).sum())} point values are NaN or Inf")
        ref_pipe, *cands = self._pipes
        ref = ref_pipe.run(points)
        boxes = {s.backends[0]: box_lists(ref.detections)}
        out = []
        for label, pipe in zip(s.backends[1:], cands):
            run = pipe.run(points, ref)
            flipped = [d for d in run.decisions if d.changed]
            flips = sum(int(getattr(d, "flipped", 1)) for d in flipped)
            delta = detection_delta(ref.detections, run.detections, self.cfg.class_names, s.max_dist,
                                    cut=self.model.cut, flips=flips)
            cf = candidate_frame(label, pipe.spec.precision, self.order, pipe.missing, ref.probes, run.probes, s,
                                 delta, self.cfg)
            if flipped:
                from dataclasses import replace

                cf = replace(cf, reason="; ".join([cf.reason or "", *(f"{d.name}: {getattr(d, 'flipped', 1)} flipped"
                                                                     for d in flipped)]).strip("; "))
            out.append(cf)
            boxes[label] = box_lists(run.detections)
        return FrameResult(index, frame.token, frame_status(out), None, int(len(points)), tuple(out), boxes,
                           truth_lists(scan.truth))

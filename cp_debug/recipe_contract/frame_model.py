"""A recipe's model as the features that run it frame by frame (sweep, eval) see it, knowing no recipe
(`FrameModel`): the bisect `Subject` of its stages, how a frame's points become stage 0's feed, how the last stage's
outputs become the boxes it deploys, and where those boxes are cut by score. `StagedPipeline` runs one backend over
the subject's stages (runners built once), the glue between stages the subject's own; `stage_runner` is the one home
of a stage's runner with its probes exposed (sweep's CenterPoint lanes build theirs with it too).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.subjects.subject import Decision, Stage, Subject
    from cp_debug.lidar.boxes import Detections


@dataclass(frozen=True)
class FrameModel:
    """A recipe's model, run frame by frame. `cut`: (score threshold, cap) where its deployment cuts boxes."""

    recipe: str
    cfg: Any
    subject: "Subject"
    feed: Callable[[np.ndarray], dict[str, np.ndarray]]  # a frame's points -> stage 0's feed
    detections: Callable[[dict[str, np.ndarray]], "Detections"]  # the last stage's outputs -> the deployed boxes
    cut: tuple[float, int | None]

    @property
    def weights(self) -> str:
        return self.subject.facts.weights


def stage_runner(spec, stage: "Stage", probes: Sequence[str] = (), determinism=None, threads: int | None = None,
                 **onnx_opts) -> tuple[Any, dict[str, str], tuple[str, ...]]:
    """The runner (not entered) of `stage` on backend `spec` with `probes` (module names) exposed: (runner, its
    output name -> probe name, the probes it cannot expose). `onnx_opts`: what an ONNX runner takes besides
    (INT8's calib_feeds or int8_model)."""
    from cp_debug.backends.factory import make_runner
    from cp_debug.determinism import Determinism

    determinism = determinism or Determinism()
    if spec.is_torch:
        runner = make_runner(spec, torch_module=stage.module, input_names=stage.input_names,
                             output_names=stage.output_names, probe_modules=list(probes),
                             probe_sites=stage.sites() if probes else None, determinism=determinism)
        return runner, {p: p for p in probes}, ()
    pm = stage.probe_map() if probes else None
    rename = {pm.tensors[p]: p for p in probes if p in pm.tensors} if pm is not None else {}
    missing = tuple(p for p in probes if pm is None or p not in pm.tensors)
    runner = make_runner(spec, onnx_model=stage.onnx(), determinism=determinism, extra_outputs=list(rename),
                         threads=threads, **onnx_opts)
    return runner, rename, missing


@dataclass(frozen=True)
class StagedRun:
    """One frame through one backend: every stage's outputs (numpy), the probes by name, the boxes, and the
    `Decision` of each decided glue (the candidate's own choice against the reference's; empty for a reference)."""

    outputs: dict[str, np.ndarray]
    probes: dict[str, np.ndarray]
    detections: "Detections"
    decisions: tuple["Decision", ...] = ()


class StagedPipeline:
    """Backend `spec` over `model`'s stages: runners built and entered once (`__enter__`), `run(points)` per frame.
    `probes`: per stage, the module names to expose (none: eval's plain run)."""

    def __init__(self, model: FrameModel, spec, *, probes: Sequence[Sequence[str]] | None = None, determinism=None,
                 threads: int | None = None):
        self.model, self.spec, self.determinism, self.threads = model, spec, determinism, threads
        self.probes = [list(p) for p in probes] if probes is not None else [[] for _ in model.subject.stages]
        self.runners: list = []
        self.renames: list[dict[str, str]] = []
        self.missing: tuple[str, ...] = ()
        self._stack: ExitStack | None = None

    def __enter__(self) -> "StagedPipeline":
        from cp_debug.backends.factory import check_available

        check_available(self.spec)
        if self.spec.calibrated or self.spec.onnx_dir is not None:
            raise BadInputError(f"{self.spec}: INT8, FP8 and deployed folders (SPEC@DIR) are not built for recipe "
                                f"{self.model.recipe!r}; use fp32/fp16 backends")
        missing = []
        with ExitStack() as stack:  # a runner that fails to start closes those started before it
            for stage, probes in zip(self.model.subject.stages, self.probes):
                runner, rename, miss = stage_runner(self.spec, stage, probes, self.determinism, self.threads)
                self.runners.append(stack.enter_context(runner))
                self.renames.append(rename)
                missing += miss
            self._stack = stack.pop_all()
        self.missing = tuple(missing)
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self.runners, self.renames = [], []

    def _stage(self, i: int, feed: dict, probes: dict | None) -> dict[str, np.ndarray]:
        out = self.runners[i].infer(feed)
        if probes is not None:
            probes.update({self.renames[i][k]: v for k, v in out.items() if k in self.renames[i]})
        return {k: out[k] for k in self.model.subject.stages[i].output_names}

    def run(self, points: np.ndarray, reference: StagedRun | None = None) -> StagedRun:
        """One frame. With the `reference`'s run, each decided glue (`Subject.decide`) feeds this backend's later
        stages on the reference's choice (the probes then compare like with like) and records its own choice; where
        that differs, the stages after it run once more on its own choice, for the boxes it deploys."""
        subject = self.model.subject
        probes: dict[str, np.ndarray] = {}
        outputs = self._stage(0, self.model.feed(points), probes)
        own: dict[str, np.ndarray] | None = None  # this backend's own upstream, where it chose otherwise
        decisions = []
        for i in range(1, len(subject.stages)):
            if reference is not None and subject.decide is not None:
                feed, decision = subject.decide(i, reference.outputs, outputs)
                if decision is not None:
                    decisions.append(decision)
                    if decision.changed and own is None:
                        own = dict(outputs)
            else:
                feed = subject.feed(i, outputs)
            if own is not None:
                own.update(self._stage(i, subject.feed(i, own), None))
            outputs.update(self._stage(i, feed, probes))
        probes.update(outputs)
        return StagedRun(outputs, probes, self.model.detections(own if own is not None else outputs),
                         tuple(decisions))

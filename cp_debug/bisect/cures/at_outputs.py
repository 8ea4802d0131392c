"""A cure rung judged at the outputs too (issue 115, item 1: a cure that leaves the output worse is never offered).

A rung of the cure ladder is verified on its segment by the run's judge (`ladder.climb`): within the precision
there. That says nothing of what it does downstream: a tensor re-quantized at a range fitted to it can pass its
segment and raise the model's output error (the issue's re-quantization, 0.357 → 0.422). So a rung the segment
passes is run once more over its whole stage, as the candidate runs it (its calibration, its node lists) with the
rung applied, on the reference's stage inputs, and judged at the stage outputs by the rule the intervention uses
(`restore.output_error`: every output by `cure_judge.passes`, the worst one's error ÷ its budget, the decisions
that flip). Compared with the uncured candidate's own output error on the same run: a rung whose worst output
error ÷ budget is larger than the uncured one's, or that flips a decision the candidate kept, is dropped — the
ladder goes on to its next rung — and said as tried (`Worse.text`).

The rungs it knows: a tensor at another INT8 range (`int8_range_rung.RangeRung`: the candidate's own Q/DQ graph of
the stage with that tensor's scale changed) and a set of nodes left out of INT8 (a tuple of node names: the
intervention's `EXCLUDE` restoration). Cost: one run of the stage for the uncured outputs and one per rung its
segment passes, only where a cure ladder runs (a root cause beyond its budget), on ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.cures.restore import OutputError
    from cp_debug.bisect.run_state import CandidateState, RunState

WORSE = 1.02  # a rung whose worst output error ÷ budget is above the uncured one's by more than this factor: worse
NONE_OFFERED = "none offered: the last rung its segment passes leaves the outputs worse than the uncured candidate's"


@dataclass(frozen=True)
class Worse:
    """A rung its segment passes that leaves the outputs worse: the outputs' error ÷ budget before and after."""

    step: object
    before: OutputError
    after: OutputError

    def text(self, said: str) -> str:
        flips = f", {self.after.flips} decision(s) flipped" if self.after.flips > self.before.flips else ""
        return (f"{said}: within precision on its segment but leaves the outputs worse "
                f"({self.after.figures(self.before)}, rel. RMSE {self.before.rel_rmse:.3g} → "
                f"{self.after.rel_rmse:.3g}{flips}): not offered")


def held(before: OutputError, after: OutputError) -> str:
    """What a rung verified on its segment does at the outputs, in the words that close its advice: back within
    their budget, or nearer but not back (then it is a step toward the cure, not the cure: issue 115, every cure
    offered holds at the output)."""
    figures = after.figures(before)
    flips = f", {before.flips} → {after.flips} decision(s) flipped" if before.flips or after.flips else ""
    if after.back:
        return f"at the outputs: {figures}{flips}, back within it"
    return f"at the outputs not back: {figures}{flips} — a step toward the cure, not the cure"


def worse(before: OutputError, after: OutputError) -> bool:
    """`after` (a rung's outputs) is worse than `before` (the uncured candidate's): a larger worst error ÷ budget, or
    more decisions flipped."""
    return after.flips > before.flips or after.ratio > WORSE * before.ratio


class OutputsJudge:
    """`judge(step) -> (before, after)`: the candidate's stage outputs uncured and with `step` applied, each an
    `OutputError`; None where the step cannot be applied at the stage (a candidate of the user's own files, a runner
    without ONNX Runtime sessions, an unknown kind of step)."""

    def __init__(self, run: RunState, state: CandidateState, stage: int):
        self.run, self.state, self.stage = run, state, stage
        self._before = None
        self._qdq = None

    def usable(self) -> bool:
        from cp_debug.backends.spec import Capability

        spec = self.state.spec
        return spec.onnx_dir is None and spec.precision == "int8" and spec.can(Capability.ORT_SESSIONS)

    def _run(self, **extra):
        from cp_debug.backends.factory import make_runner

        run, spec = self.run, self.state.spec
        model = run.stage_of(self.state.label, self.stage).onnx()
        kw = {"determinism": run.det, "spinning": False, "graph_facts": False, **run.ort_kwargs(spec, model)}
        if spec.calibrated:
            kw["calib_feeds"] = run.calib(self.stage)
        kw.update(extra)
        with make_runner(spec, onnx_model=model, **kw) as r:
            out = r.infer(dict(run.ref_feeds[self.stage]))
            q = getattr(r, "quantized", None)
        return out, (q.model if q is not None else None)

    def before(self) -> OutputError:
        from cp_debug.bisect.cures.restore import output_error

        if self._before is None:
            out, self._qdq = self._run()
            self._before = output_error(self.run, self.state, self.stage, out)
        return self._before

    def __call__(self, step) -> tuple[OutputError, OutputError] | None:
        from cp_debug.bisect.cures.int8_range_rung import RangeRung, with_range
        from cp_debug.bisect.cures.restore import EXCLUDE, Restoration, output_error, run_restored

        if not self.usable():
            return None
        before = self.before()
        if isinstance(step, RangeRung):
            if self._qdq is None:
                return None
            out, _ = self._run(int8_model=with_range(self._qdq, step.tensor, step.amax))
        elif isinstance(step, tuple) and step and all(isinstance(n, str) for n in step):
            out = run_restored(self.run, self.state, self.stage,
                               [Restoration("cure", self.stage, EXCLUDE, nodes=step)])
        else:
            return None
        return before, output_error(self.run, self.state, self.stage, out)

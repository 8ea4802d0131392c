"""The cure ladder, one walk for every format (issue 84, item 4: smallest first, each verified): `climb` walks the
rungs on a root cause's segment, `within` is the run's judge of a segment's local error, `ladder_text` says the last
rung with its figures, `named` a node as the advice names it. INT8's sets and range (segment_int8.py,
int8_story_cure.py), ONNX Runtime's ClipQuantFusion (clip_fusion.py), FP8's and the block formats' rungs
(segment_fp8.py, segment_blocks.py)."""

from __future__ import annotations

from cp_debug.bisect.findings.op_findings import named_module
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare.diff import TensorDiff


def climb(run: RunState, state: CandidateState, probe: str, steps: list, values_of, seen: list | None = None,
          outputs=None, worse: list | None = None, judged_at_outputs: dict | None = None) -> tuple:
    """A cure ladder walked on `probe`'s segment, smallest change first: each step's values (`values_of(step)`)
    judged as the segment's local error is (`within`), up to the first within the precision or the last step.
    Returns (its 1-based rank, the step, its TensorDiff, within, the budget) — INT8's range and sets left out, FP8's
    and the block formats' rungs (segment_fp8.py, segment_blocks.py); `seen` gets (step, TensorDiff, within) of each.
    `outputs` (`at_outputs.OutputsJudge`): a step its segment passes is judged at the stage outputs too, and one that
    leaves them worse than the uncured candidate's is no cure (`worse` gets its `at_outputs.Worse`): the next step;
    `judged_at_outputs` gets each judged step's (before, after) `OutputError`s by `id(step)`."""
    from cp_debug.bisect.cures.at_outputs import Worse
    from cp_debug.bisect.cures.at_outputs import worse as is_worse

    truth, judge = run.store.get(probe), run.tolerance(state, probe)
    for k, step in enumerate(steps, 1):
        after = TensorDiff.from_arrays(probe, truth, values_of(step), judge)
        ok, budget = within(run, state, probe, after)
        judged = outputs(step) if ok and outputs is not None else None
        if judged is not None and judged_at_outputs is not None:
            judged_at_outputs[id(step)] = judged
        if judged is not None and is_worse(*judged):
            ok = False
            if worse is not None:
                worse.append(Worse(step, *judged))
        if seen is not None:
            seen.append((step, after, ok))
        if ok or k == len(steps):
            return k, step, after, ok, budget
    raise ValueError("a ladder of no step")


def within(run: RunState, state: CandidateState, probe: str, d: TensorDiff) -> tuple[bool, float | None]:
    """Is a segment's local error within the candidate's precision, as its local error is judged (the noise model,
    else the fixed tolerance)? With the budget it was judged against (None in fixed mode)."""
    if run.opts.tolerance_mode == "fixed":
        return d.status == "ok", None
    j = run.judge(state, probe, d)
    return not j.beyond, j.expected_rel_rmse


def ladder_text(why: str, change: str, fmt: str, before: float, after: float, budget: float | None,
                exclude: tuple[str, ...], verified: bool, tried: int) -> str:
    """A quantized format's why with the last change of its ladder: verified (within precision with it) or not,
    the segment's local error before and after against the format's budget, and the flag that leaves nodes out."""
    limit = f", {fmt}'s budget {budget:.3g}" if budget is not None else ""
    numbers = f"local rel. RMSE {before:.3g} → {after:.3g}{limit}"
    flag = f"; --exclude-int8 {','.join(exclude)}" if exclude else ""
    if verified:
        return f"{why}; verified: within precision with {change} ({numbers}{flag})"
    sets = f"; {tried} changes tried, the last shown" if tried > 1 else ""
    return f"{why}; {change} does not cure this segment ({numbers}{flag}{sets})"


def named(node, stage) -> str:
    """A node as the advice names it: `module: Op 'name'` where the graph says its module."""
    module = named_module(node, stage)
    return f"{module + ': ' if module else ''}{node.op_type} {node.name!r}"

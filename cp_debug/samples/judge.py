"""One sample's outputs judged as bisect judges a candidate (the one judge, `compare/noise.py`): each graph output's
`TensorDiff` against the reference's, and the sample's outcome — within_precision, degraded or diverged — the worst of
its outputs' (`--tolerance-mode fixed`: diverged where an output is beyond atol/rtol, else within precision)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from cp_debug.compare.diff import TensorDiff, Tolerance, default_tolerance
from cp_debug.compare.noise import Judgement, Outcome, judge, worst


@dataclass(frozen=True)
class OutputJudgement:
    """One graph output of one sample: its diff and the noise model's judgement of it."""

    diff: TensorDiff
    judgement: Judgement


@dataclass(frozen=True)
class SampleJudgement:
    """A sample's outputs and its outcome, the worst output (by noise ratio) and why, in a few words."""

    outputs: tuple[OutputJudgement, ...]
    outcome: Outcome
    worst_output: str | None
    reason: str | None


def tolerance(precision: str, atol: float | None = None, rtol: float | None = None) -> Tolerance:
    """`precision`'s default tolerance with the user's --atol / --rtol in place."""
    t = default_tolerance(precision)
    return Tolerance(t.atol if atol is None else atol, t.rtol if rtol is None else rtol, t.max_share)


def judge_sample(reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], precision: str,
                 tol: Tolerance, mode: str = "model", unit: float | None = None) -> SampleJudgement:
    """Every output of `reference` against `got` at `precision` (an output the candidate lacks: diverged; `unit`: a
    weight-only precision's, measured from the candidate's files)."""
    outs = []
    for name, ref in reference.items():
        test = got.get(name)
        if test is None:
            test = np.full((0,), np.nan, np.float32)
        d = TensorDiff.from_arrays(name, np.asarray(ref), np.asarray(test), tol)
        j = judge(d, precision, unit=unit)
        if mode == "fixed":
            j = Judgement(Outcome.DIVERGED if d.status != "ok" else Outcome.WITHIN_PRECISION, j.expected_rel_rmse,
                          j.noise_ratio, f"{d.status}: {d.share_beyond:.3g} of the elements beyond atol/rtol")
        outs.append(OutputJudgement(d, j))
    outcome = worst(o.judgement.outcome for o in outs)
    bad = max(outs, key=lambda o: (o.judgement.outcome.severity, _finite(o.judgement.noise_ratio)), default=None)
    reason = f"{bad.diff.name}: {bad.judgement.reason}" if bad is not None and outcome is not \
        Outcome.WITHIN_PRECISION else None
    return SampleJudgement(tuple(outs), outcome, bad.diff.name if bad else None, reason)


def _finite(x: float) -> float:
    return 1e300 if x != x or x == float("inf") else x

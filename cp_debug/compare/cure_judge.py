"""Does an output pass as a cure: the one judge of every cure (issue 115, "every cure offered holds at the output").

bisect's intervention (`bisect/cures/restore.output_error`), keep-fp32's search (model mode), the Q/DQ exclusion cure
(`bisect/cures/qdq_exclude`), fix's search, its verification and `fix --check` (`fix/graph_verification`) ask it, so
a set one of them verifies the others verify too ("advice is verified by the same judge as the run before it").

The rule, in model mode: an output `held` — within its budget in the candidate as it is, nothing restored (bisect's
verdict, `noise.status_of`: "ok") — passes where it is within its budget after the cure: an element-wise miss the
candidate had before is not the cure's to remove, and bisect's verdict never called it one (silero-vad's INT8:
`encoder/3` left out brings the worst output to 0.72× its budget, an element past --atol/--rtol). Any other output
passes where it is within its tolerance (|Δ| ≤ atol + rtol·|ref| on all but `max_share` of its elements) and within
its budget (`noise.judge`'s, or the one given: INT8's carried budget, the run's calibrated range). A judge by the
tolerance alone (keep-fp32 given --atol/--rtol: its fixed mode; bisect's `--tolerance-mode fixed`) is the tolerance's,
not this one.
"""

from __future__ import annotations

from typing import Iterable

from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.noise import Judgement, judge, status_of


def within(d: TensorDiff, j: Judgement) -> bool:
    """bisect's verdict of one output (`noise.status_of`): within its budget, no NaN/Inf, no shape mix-up."""
    return status_of(d, j) == "ok"


def passes(d: TensorDiff, precision: str, j: Judgement | None = None, held: bool = False) -> bool:
    """Whether output `d` passes as a cure: `held` (within its budget in the candidate as it is: `held_of`), within
    its budget; else within its tolerance and its budget. `j`: its judgement where already made (else `precision`'s)."""
    j = j if j is not None else judge(d, precision)
    return within(d, j) if held else d.status == "ok" and not j.beyond


def held_of(judged: Iterable[tuple[TensorDiff, Judgement]]) -> frozenset[str]:
    """The outputs within their budget (`within`) among `judged` (each output with its judgement), as the candidate
    runs with nothing restored: those a cure is held to by their budget alone (`passes`)."""
    return frozenset(d.name for d, j in judged if within(d, j))

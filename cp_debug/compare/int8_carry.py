"""INT8's carried budget, one rule for every judge of a tensor: bisect's verdict (`bisect.stages.record.carry`) and the
judge
of a cure in fix's search and verification (`fix.carried_outputs`) call `carry_judgement`, so that a model bisect
calls within INT8's noise is one fix finds nothing to cure in (issue 84, item 4).

The rule (`noise.carried`): a tensor beyond its own INT8 budget only by the rounding it was fed — the tensor it reads
(`source`) within its own budget, its own segment within its own (`local_within`), the error passed on by a gain of
at most `noise.DOMINANCE` — is judged by the budget that rounding carries: gain × the source's. A classifier's logits
(10 values, amax / rms ≈ 2) have a unit several times finer than the ReLU6 maps they read: a healthy MobileNetV2
calibrated on held-out samples reached 1.8× its logits' own budget in bisect, within the carried one; fix, judging each
graph output by its own budget alone, left 11 of its 53 convs out of INT8 for a model with one planted channel.
"""

from __future__ import annotations

import math
from typing import Callable

from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.noise import Judgement, Outcome, carried


def carry_judgement(j: Judgement, d: TensorDiff, source: str, source_diff: TensorDiff | None,
                    source_own: Judgement | None, local_within: Callable[[], bool], precision: str) -> Judgement:
    """`j` (the judgement of `d` by its own budget) or, where the rule applies, the judgement by the budget carried
    from `source` (`source_diff`: its error, `source_own`: its judgement by its own budget, never one carried in turn,
    so that a budget does not grow down the network). `local_within` is asked last (it may run the tensor's segment
    alone: fix's judge runs it only where everything else holds)."""
    if precision != "int8" or j.outcome is not Outcome.DEGRADED or source_diff is None or source_own is None \
            or source_own.beyond:
        return j
    e_in = source_diff.rel_rmse
    if not (math.isfinite(e_in) and e_in > 0 and math.isfinite(d.rel_rmse)):
        return j
    found = carried(j, d.rel_rmse, d.rel_rmse / e_in, source_own, source, precision)
    if found is j or not local_within():
        return j
    return found

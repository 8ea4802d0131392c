"""A reference that is not stable gives no verdict (issue 108, item 2).

The reference runs each stage twice (the noise floor, `stage_whole._noise_run`: `run.noise`, probe -> its second
run against its first). Every budget is widened to 4× that noise (`noise.FLOOR_FACTOR`), so a reference whose own
runs differ beyond the candidate's budget widens the budget until any candidate passes: a model whose forward
samples (dropout kept on, `F.dropout(..., training=True)`; noise drawn from a generator of its own) called
"within precision" a candidate it never compared. Where the reference's two runs differ beyond the candidate's
budget at some probe (that budget without the floor: what the precision alone explains), the candidate's verdict is
`inconclusive` (exit 6), naming the probe and both numbers. A candidate's NaN/Inf or shape mix-up where the
reference is finite is a finding whatever the noise: its verdict stands.
"""

from __future__ import annotations

import math

from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare import noise
from cp_debug.compare.diff import BROKEN


def unstable_reference(run: RunState, state: CandidateState, results: list[ProbeResult]) -> str | None:
    """Why no verdict of `state` can rest on the reference (its own runs differ beyond the candidate's budget at a
    probe), or None: stable enough, no noise run, or the candidate broke (NaN/Inf, shape) whatever the noise."""
    if not run.noise or any(r.status in BROKEN for r in results):
        return None
    prec = state.judged_at
    worst = None
    for r in results:
        nz = run.noise.get(r.probe)
        if nz is None or r.diff is None or not math.isfinite(nz.rel_rmse) or nz.rel_rmse <= 0:
            continue
        amax = r.diff.ref_absmax if prec == "int8" else None
        own = noise.budget(prec, amax, noise.ref_rms(r.diff))  # the precision's alone, without the floor
        if own > 0 and nz.rel_rmse > own and (worst is None or nz.rel_rmse / own > worst[1] / worst[2]):
            worst = (r.probe, nz.rel_rmse, own)
    if worst is None:
        return None
    probe, rel, own = worst
    return (f"the reference is not stable: its own two runs differ by rel. RMS {rel:.3g} at {probe}, "
            f"{rel / own:.3g}× {prec}'s budget {own:.3g} — beyond what the candidate's precision explains, so its "
            f"comparison cannot tell {prec}'s rounding from the reference's own noise (a forward that samples: "
            "dropout or noise kept on in eval mode; make the reference deterministic, then run again)")

"""Which probe diverges first, and which one introduces the error.

`first_divergent` is the first probe (execution order) beyond tolerance: a fact of the report. `root_cause` is the
probe whose segment *by itself* (fed the reference's inputs) stands furthest beyond its precision's budget — its
local error ÷ the noise model's expected rounding (`local_judgement.noise_ratio`) — anywhere in the run, not only up
to the first divergent probe: a first divergent probe barely past its budget by what flowed in never hides a larger
own error after it (issue 108: RT-DETR's first divergent `decoder_input_proj.2` at 1.1× while the encoder's TopK
brought 8× on its own). NaN/Inf and shape mismatches come first. An error introduced early and amplified later
therefore points at where it is introduced, not where it crosses the tolerance; a decision in the root cause's
segment (TopK, ArgMax, an index) is named as a decision by the verdict (`choice_flip.known_flip`).
"""

from __future__ import annotations

import math

from cp_debug.bisect.result import ProbeResult
from cp_debug.compare.diff import BROKEN

_BAD = ("diverged", *BROKEN)


def first_divergent(results: list[ProbeResult]) -> str | None:
    for r in results:
        if r.status in _BAD:
            return r.probe
    return None


def root_cause(results: list[ProbeResult], first: str | None) -> str | None:
    """The probe whose own error stands furthest beyond its budget (see the module docstring); None where no probe
    diverges."""
    ranked = causes(results, first)
    return ranked[0] if ranked else None


def causes(results: list[ProbeResult], first: str | None) -> list[str]:
    """Every probe that introduces error, most first: a segment that makes NaN/Inf or the wrong shape on its own
    (execution order), else the first probe where one appears without a local run; then by own error ÷ budget
    (`own_error`), the largest first (ties: execution order). Empty where no probe diverges."""
    if first is None:
        return []
    broken = [r.probe for r in results if r.local is not None and r.local.status in BROKEN]
    broken += [r.probe for r in results if r.diff is not None and r.status in BROKEN and r.local is None][:1]
    scored = [(s, k, r.probe) for k, r in enumerate(results) if (s := own_error(r)) is not None]
    ranked = [p for _, _, p in sorted(scored, key=lambda t: (-t[0], t[1]))]
    out = list(dict.fromkeys([*broken, *ranked]))
    return out or [first]


def own_error(r: ProbeResult) -> float | None:
    """How much error this probe's segment introduces by itself, in its precision's budgets: its local error's noise
    ratio (the relative RMS error where it was not judged)."""
    if r.local is not None and math.isfinite(r.local.rel_rmse):
        lj = r.local_judgement
        return lj.noise_ratio if lj is not None and math.isfinite(lj.noise_ratio) else r.local.rel_rmse
    if r.local is None and r.diff is not None and math.isfinite(r.diff.rel_rmse):
        # No local run (e.g. shared glue): count only the growth beyond what flowed in.
        if r.amplification is not None and math.isfinite(r.amplification) and r.amplification > 0:
            j = r.judgement
            scale = j.noise_ratio / r.diff.rel_rmse if j is not None and r.diff.rel_rmse > 0 else 1.0
            grown = r.diff.rel_rmse * max(0.0, 1.0 - 1.0 / r.amplification) if r.amplification > 1 else 0.0
            return grown * scale if math.isfinite(scale) else grown
        return None
    return None


def beyond_locally(r: ProbeResult | None) -> bool:
    """A probe whose segment alone (on the reference's boundary) breaks (NaN/Inf, shape) or is beyond its budget:
    the precision's (the noise model's judgement, where the run has one), else the element-wise tolerance."""
    if r is None or r.local is None:
        return False
    if r.local.status in BROKEN:
        return True
    return r.local_judgement.beyond if r.local_judgement is not None else r.local.status != "ok"

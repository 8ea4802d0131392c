"""Which probe diverges first, and which one introduces the error.

`first_divergent` is the first probe (execution order) beyond tolerance. `root_cause` is the probe, up to
the first divergent one, whose segment *by itself* (fed the reference's inputs) introduces the most error —
scale-free relative RMS error, NaN/Inf and shape mismatches first. An error introduced early and amplified
later therefore points at where it is introduced, not where it crosses the tolerance.
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
    if first is None:
        return None
    upto: list[ProbeResult] = []
    for r in results:
        upto.append(r)
        if r.probe == first:
            break
    # A segment that produces non-finite values or the wrong shape on its own is the cause.
    for r in upto:
        if r.local is not None and r.local.status in BROKEN:
            return r.probe
    # Without local error there, the first probe where NaN/Inf or a bad shape appears.
    for r in upto:
        if r.diff is not None and r.status in BROKEN and r.local is None:
            return r.probe
    best, best_score = None, -1.0
    for r in upto:
        score = _introduced(r)
        if score is not None and score > best_score * (1 + 1e-9):
            best, best_score = r.probe, score
    return best or first


def _introduced(r: ProbeResult) -> float | None:
    """How much error this probe's segment introduces by itself (relative RMS error)."""
    if r.local is not None and math.isfinite(r.local.rel_rmse):
        return r.local.rel_rmse
    if r.local is None and r.diff is not None and math.isfinite(r.diff.rel_rmse):
        # No local run (e.g. shared glue): count only the growth beyond what flowed in.
        if r.amplification is not None and math.isfinite(r.amplification) and r.amplification > 0:
            return r.diff.rel_rmse * max(0.0, 1.0 - 1.0 / r.amplification) if r.amplification > 1 else 0.0
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

"""A weight-only format's segment judged by its own roundings (issue 116, s9).

A probe of a weight-only file (int4w, int8w, "-a8": `MatMulNBits`) is held to 3 units of its weights' rounding
(`noise.WEIGHT_ONLY_GROWTH`: the roundings of the matmuls before it, added up). Its segment's own error, the probe's
computation fed the reference's inputs, holds the roundings of its own matmuls only: one matmul's is 1 unit (measured
from the file's weights; the corpus's single-matmul segments reach 0.96-1.09 units, two in series √2), so the local
error has a budget of its own, `noise.WEIGHT_ONLY_OWN` units (2) for one matmul, √n + 1 for the n MatMulNBits a segment
holds in series with no probe between (`own_units`, s10; s13: the longest chain on a path through it,
`graph.plan.in_series` — a layer's q, k and v side by side count once: the healthy layers' segments of 4-6 in series
reach 1.9-3.0). A segment beyond it is
beyond anything its weights' rounding explains — an INT8 activation block whose massive channel rounds the other values
to nothing brings 2.6-3.3 units in lm_head alone (the corpus's Qwen3, Mistral and Phi-3 with a massive channel) —
whether or not its probe's propagated error crosses the 3 units on this input: the probe is degraded, and, for a layer
(no measured probe inside), a local fault where it also stands out from the run's other segments (`OWN_DOMINANCE`, 2:
the massive channel's lm_head 2.8-3.3× their median; `noise.DOMINANCE`'s 3 is for a budget estimated from a format's
growth, not measured).
"""

from __future__ import annotations

import math
from dataclasses import replace

from cp_debug.compare import noise
from cp_debug.compare.diff import TensorDiff

# × the median of the run's other segments' own errors: one matmul's rounding against two's in series is √2, so a
# segment standing out by 2 is no spread of roundings; where every segment errs alike (OLMo's norms, computed otherwise
# in each layer: 2.3 units against a median of 1.8) the error is the run's, not one layer's
OWN_DOMINANCE = 2.0


def weight_only(precision: str | None) -> bool:
    return precision in noise.WEIGHT_ONLY_UNIT


def own_units(matmuls: int = 1) -> float:
    """The units of its weights' rounding a weight-only segment's own error may reach: `noise.WEIGHT_ONLY_OWN` for
    one matmul; for the n it holds in series with no probe between (parallel ones, whose roundings meet side by side,
    count once), their roundings in quadrature (√n units) and the one unit of slack a single matmul has (its own
    error 0.8-1.15 units against 2): √n + 1 (measured: docs/llm.md, s10 and s13)."""
    return math.sqrt(max(1, matmuls)) + noise.WEIGHT_ONLY_OWN - 1.0


def own_roundings(own: float, precision: str, unit=None, matmuls: int = 1) -> bool:
    """A segment's own rel. RMS error `own` is its weight-only roundings' (≤ `own_units(matmuls)`; noise's "Depth")."""
    return math.isfinite(own) and own <= own_units(matmuls) * noise.unit_roundoff(precision, unit=unit)


def own_judgement(lj: noise.Judgement, loc: TensorDiff, precision: str, unit=None,
                  matmuls: int = 1) -> noise.Judgement:
    """The local judgement `lj` (made against the probe's budget) against what the segment's own roundings explain:
    `own_units` of the `matmuls` it holds (`WEIGHT_ONLY_OWN` for one), where the reference's own noise does not
    set a larger budget; any other precision's as it is."""
    if not weight_only(precision) or not math.isfinite(lj.expected_rel_rmse):
        return lj
    u = noise.unit_roundoff(precision, unit=unit)
    if lj.expected_rel_rmse > noise.WEIGHT_ONLY_GROWTH * u * (1 + 1e-9):  # the reference's own noise sets it
        return lj
    units = own_units(matmuls)
    exp = units * u
    if lj.outcome is noise.Outcome.DIVERGED:
        return replace(lj, expected_rel_rmse=exp)
    err = loc.rel_rmse if math.isfinite(loc.rel_rmse) else math.inf
    ratio = err / exp if exp > 0 else math.inf
    outcome = noise.Outcome.WITHIN_PRECISION if ratio <= 1 else noise.Outcome.DEGRADED
    return noise.Judgement(outcome, exp, ratio, f"its segment's own rel. RMS error {ratio:.3g}× what {precision}'s "
                           f"own roundings explain ({units:.3g} units of {u:.3g}"
                           + (f", its {matmuls} matmuls' in series" if matmuls > 1 else "") + ")")


def beyond_own(j: noise.Judgement, lj: noise.Judgement | None, precision: str) -> noise.Judgement:
    """A probe within its budget whose own segment is beyond its roundings (`own_judgement`) is degraded all the same:
    its propagated error crosses the budget on another input (the massive-channel Qwen3's logits: 0.94-1.09× of it
    on the prompt as machines differ, its own error 2.8-3.3 units on each)."""
    if j.beyond or lj is None or not lj.beyond or not weight_only(precision):
        return j
    return noise.Judgement(noise.Outcome.DEGRADED, j.expected_rel_rmse, j.noise_ratio,
                           f"rel. RMS error {j.noise_ratio:.2g}× {precision}'s budget, {lj.reason}")


def own_fault(precision: str, lj: noise.Judgement | None, layer: bool, others) -> bool:
    """A weight-only layer's own error beyond what its roundings explain, `OWN_DOMINANCE`× the median of the run's
    other segments' (`others`: their local noise ratios, three or more), is a local fault (see the module)."""
    if not (weight_only(precision) and layer and lj is not None and lj.beyond):
        return False
    rest = sorted(r for r in others if math.isfinite(r) and r > 0)
    return len(rest) >= 3 and lj.noise_ratio >= OWN_DOMINANCE * rest[len(rest) // 2]


def beyond_words(n: int, probe: str, j: noise.Judgement, lj: noise.Judgement | None, precision: str) -> str:
    """The degraded verdict's words for `n` probes beyond, the worst `probe` (`j`, `lj`: its judgements) — one beyond
    by its own segment only (`beyond_own`) said so, not as "beyond, 0.8×"."""
    if weight_only(precision) and not j.noise_ratio > 1 and lj is not None and lj.beyond:
        return (f"{n} probe(s) beyond {precision}'s expected rounding or their own roundings (worst {probe}: its "
                f"segment alone {lj.noise_ratio:.3g}× what {precision}'s own roundings explain, its error "
                f"{j.noise_ratio:.3g}× the budget), no layer's own error a fault of its own")
    return (f"{n} probe(s) beyond {precision}'s expected rounding (worst {probe}, {j.noise_ratio:.3g}×), no layer's "
            "own error a fault of its own")


def fault_words(precision: str) -> str:
    """How the local fault's sentence names the budget: a weight-only segment's own roundings, else the precision's
    expected rounding."""
    return f"what {precision}'s own roundings explain" if weight_only(precision) else f"{precision}'s expected rounding"

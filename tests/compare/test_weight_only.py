"""A weight-only segment's own error against what its own roundings explain (compare/weight_only.py), on the
figures the corpus's files give: one matmul's rounding is ~1 unit (0.96-1.24 on the healthy files), the massive
channel's lm_head 2.6-3.3 units."""

from __future__ import annotations

import numpy as np

from cp_debug.compare import noise, weight_only
from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.noise import Outcome

UNIT = 0.0867  # the builder's INT4 files' own (tests/data/llm)


def _local(units: float, precision: str = "int4w-a8", seed: int = 0):
    """A segment's output and its candidate at `units` of the unit's relative RMS error, judged locally."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(4096).astype(np.float32)
    noise_ = rng.standard_normal(4096).astype(np.float32)
    test = ref + noise_ * (units * UNIT * np.sqrt(np.mean(ref ** 2)) / np.sqrt(np.mean(noise_ ** 2)))
    d = TensorDiff.from_arrays("x", ref, test)
    lj = noise.judge(d, precision, unit=UNIT)
    return d, lj, weight_only.own_judgement(lj, d, precision, UNIT)


def test_one_matmuls_rounding_is_within_its_own_budget_and_the_massive_channel_is_not():
    for units in (0.96, 1.24, 1.41):  # one rounding, the healthy files' worst, two in series
        _, lj, own = _local(units)
        assert not own.beyond and own.expected_rel_rmse == noise.WEIGHT_ONLY_OWN * UNIT
        assert own.noise_ratio > lj.noise_ratio  # 2 units, not 3
    for units in (2.6, 2.9):  # lm_head's INT8 activation block with a massive channel: within 3 units, not 2
        _, lj, own = _local(units)
        assert not lj.beyond and own.beyond and own.outcome is Outcome.DEGRADED


def test_other_precisions_keep_their_local_budget():
    d = TensorDiff.from_arrays("x", np.ones(8, np.float32), np.ones(8, np.float32) * 1.001)
    lj = noise.judge(d, "fp16")
    assert weight_only.own_judgement(lj, d, "fp16") is lj
    assert weight_only.beyond_own(lj, lj, "fp16") is lj


def test_a_probe_within_its_budget_is_degraded_by_its_own_segment_only_for_weight_only():
    d, lj, own = _local(2.8)
    j = noise.judge(d, "int4w-a8", unit=UNIT)
    assert not j.beyond
    got = weight_only.beyond_own(j, own, "int4w-a8")
    assert got.outcome is Outcome.DEGRADED and got.noise_ratio == j.noise_ratio
    _, _, fine = _local(1.0)
    assert weight_only.beyond_own(j, fine, "int4w-a8") is j


def test_a_local_fault_stands_out_from_the_runs_other_segments():
    _, _, own = _local(2.8)  # 1.4× the own budget
    assert weight_only.own_fault("int4w-a8", own, True, [0.5, 0.52, 0.48, 0.55])  # one matmul each: ~1 unit
    assert not weight_only.own_fault("int4w-a8", own, True, [0.9, 0.92, 0.95])  # every segment errs alike (OLMo)
    assert not weight_only.own_fault("int4w-a8", own, False, [0.5, 0.5, 0.5])  # holds measured layers
    assert not weight_only.own_fault("int4w-a8", own, True, [0.5])  # too few to say
    assert not weight_only.own_fault("fp16", own, True, [0.1, 0.1, 0.1])


def test_a_report_read_back_keeps_the_segments_own_budget():
    """A probe's result written to the report's JSON and read back (`cpdebug report`, compare runs, bundles) rebuilds
    its local judgement with the budget it was judged by — the segment's own roundings (2 units), not the probe's 3
    (before: the ratio kept, the budget figure the probe's)."""
    from cp_debug.bisect.result import ProbeResult

    d, lj, own = _local(2.8)  # the massive channel's lm_head
    j = noise.judge(d, "int4w-a8", unit=UNIT)
    again = ProbeResult.from_json(ProbeResult("logits", "ok", d, d, judgement=j, local_judgement=own).to_json())
    assert again.local_judgement.expected_rel_rmse == own.expected_rel_rmse == noise.WEIGHT_ONLY_OWN * UNIT
    assert again.local_judgement.beyond and abs(again.local_judgement.noise_ratio - own.noise_ratio) < 1e-12
    assert again.judgement.expected_rel_rmse == j.expected_rel_rmse != own.expected_rel_rmse
    plain = ProbeResult.from_json(ProbeResult("logits", "ok", d, d, judgement=j, local_judgement=lj).to_json())
    assert plain.local_judgement.expected_rel_rmse == lj.expected_rel_rmse  # a probe's own budget: as before


def test_a_segments_own_budget_grows_with_the_matmuls_it_holds():
    """√n + 1 units for the n weight-only matmuls a segment holds with no probe between (`own_units`): the
    healthy corpus files' segments at `--level block` (3 to 11 MatMulNBits, measured: docs/llm.md) are within it,
    where the fixed 2 units called those of 5 and more beyond; one matmul keeps 2, and lm_head's massive channel
    (2.8-3.3 units) in a segment of 3 is still beyond (√(3.3² + 2) = 3.6 against 2.73)."""
    units_of = weight_only.own_units
    assert units_of(1) == units_of(0) == noise.WEIGHT_ONLY_OWN == 2.0 and units_of(4) == 3.0
    for units, n in ((1.58, 3), (2.75, 5), (2.74, 7), (2.98, 11)):  # the healthy files' worst segment of n matmuls
        d, lj, fixed = _local(units)
        own = weight_only.own_judgement(lj, d, "int4w-a8", UNIT, matmuls=n)
        assert not own.beyond and f"its {n} matmuls'" in own.reason
        assert own.expected_rel_rmse == (n ** 0.5 + 1) * UNIT
        assert fixed.beyond == (units > noise.WEIGHT_ONLY_OWN)
    d, lj, _ = _local(3.6)
    assert weight_only.own_judgement(lj, d, "int4w-a8", UNIT, matmuls=3).beyond

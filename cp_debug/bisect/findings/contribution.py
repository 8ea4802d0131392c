"""A small term judged by what it adds: a probe whose value is added to a much larger one (a residual branch scaled
by a layer scale of 1e-6, timm ConvNeXt's gamma at init) may lose all its digits in float16 and still change the sum
by less than the sum's own rounding. Such a probe is judged by its contribution, not on its own scale: its error is
read against the magnitude of the Add that consumes it (`rms(error) / rms(sum)`, the sum's reference from its own
row's figures), and where that share is within the sum's budget and the sum itself is within precision, the row is
no finding — its status ok, its judgement the contribution, and its note the share it rests on. Everything
downstream is judged as before, so the verdict stays within precision only where the rest is."""

from __future__ import annotations

import math
from dataclasses import replace

from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare import noise
from cp_debug.compare.diff import TensorDiff

_SUMS = ("Add", "Sum")
_PASS_THROUGH = ("Identity", "Cast")  # a drop path (Identity at inference) between the term and its sum


def judge_small_terms(run: RunState, state: CandidateState, names: list[str]) -> None:
    """Re-judge each diverged, finite probe of `names` that is a term of an Add whose row is within precision and
    whose sum its error barely moves (see the module's docstring); the others stay as they are."""
    if run.opts.tolerance_mode != "model":
        return
    for name in names:
        r = state.results.get(name)
        if r is None or r.status != "diverged" or r.diff is None or r.diff.nan or r.diff.inf:
            continue
        found = _sum_row(run, state, name)
        if found is None:
            continue
        sum_name, sum_r = found
        judged = _as_term(r, sum_name, sum_r)
        if judged is not None:
            state.results[name] = judged


def _as_term(r: ProbeResult, sum_name: str, sum_r: ProbeResult) -> ProbeResult | None:
    """`r` judged by its share of `sum_r`'s magnitude, or None where that share is beyond the sum's budget."""
    sj = sum_r.judgement
    if sum_r.status != "ok" or sj is None or sj.beyond or sum_r.diff is None:
        return None
    total = noise.ref_rms(sum_r.diff)
    budget = sj.expected_rel_rmse
    if total is None or total <= 0 or not math.isfinite(budget) or budget <= 0:
        return None
    shares = [d.rmse / total for d in (r.diff, r.local) if d is not None and math.isfinite(d.rmse)]
    if not shares or max(shares) > budget:
        return None
    term = noise.ref_rms(r.diff)
    size = f"its term is {term / total:.2g} of the sum's magnitude (rms), and " if term is not None else ""
    note = (f"a small term of {sum_name}: {size}its error is {shares[0]:.2g} of the sum (rms), within the sum's "
            f"budget ({budget:.3g}); judged by its contribution, not on its own scale (rel. RMSE "
            f"{r.diff.rel_rmse:.3g})")
    return replace(r.noted(note), status="ok",
                   judgement=_contribution(r.diff, shares[0], budget, sum_name),
                   local_judgement=(_contribution(r.local, shares[-1], budget, sum_name)
                                    if r.local is not None else None))


def _contribution(d: TensorDiff, share: float, budget: float, sum_name: str) -> noise.Judgement:
    return noise.Judgement(noise.Outcome.WITHIN_PRECISION, budget, share / budget,
                           f"its error is {share:.2g} of {sum_name} (rms), within its budget")


def _sum_row(run: RunState, state: CandidateState, name: str) -> tuple[str, ProbeResult] | None:
    """The row of the Add that consumes probe `name`'s tensor (through Identity / Cast), where it has one."""
    p = run.probes.get(name)
    if p is None:
        return None
    st = run.stage_of(state.label, p.stage)
    pm = st.made_probe_map  # a run that exported nothing (torch against torch) has no graph to read
    tensor = pm.tensors.get(name) if pm is not None else None
    if tensor is None or st.onnx_model is None:
        return None
    readers: dict[str, list] = {}
    for node in st.onnx_model.graph.node:
        for t in node.input:
            readers.setdefault(t, []).append(node)
    by_tensor = {t: q for q, t in pm.tensors.items() if q in state.results}
    for _ in range(4):
        nodes = readers.get(tensor, [])
        if len(nodes) != 1:
            return None
        node = nodes[0]
        if node.op_type in _SUMS:
            row = by_tensor.get(node.output[0])
            return (row, state.results[row]) if row is not None else None
        if node.op_type not in _PASS_THROUGH:
            return None
        tensor = node.output[0]
    return None

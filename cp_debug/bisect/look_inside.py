"""One depth for one fault (issue 117, item 3): a block within precision at its output may hold a layer beyond its
own budget.

At the default level a `--torch` run probes blocks (a BERT's encoder layers). A block ending in LayerNorm after a
residual add hides a layer that loses most of its values (an INT8 dense reading outlier channels: 4.5× int8's
budget on its own, the block's output 0.3×): no probe is beyond, nothing is blamed, nothing descends, where the
same file given as `--onnx` (every tensor probed) names the dense with its reason and cure. So where the level was
not the user's and no root cause was found, the block whose own segment brings the largest share of its budget
(`LOOK`, or more) is probed once more at its layers, each with its local error: a layer beyond its budget there is
the root cause, refined and explained as at any level; none, and the layers' rows are dropped (the report as at the
block level). A healthy run whose blocks all stay under `LOOK` probes nothing more.

Size outranks kind (issue 115): where a root cause was proposed but the intervention confirmed none, a block that
brings `LOOK` of its budget or more may still hide a layer whose own error is larger than the proposed root's (a
per-tensor Q/DQ MobileNetV2's planted depthwise conv, 4.8× int8's budget on its own, behind its block's residual at
0.9×, while the graph output's clip stands at 1.5×): the block is looked into the same way, and that layer is the
root cause only where its own error ÷ budget exceeds the proposed root's (`above`).
"""

from __future__ import annotations

from cp_debug.bisect.findings.contribution import judge_small_terms
from cp_debug.bisect.ranking import beyond_locally, first_divergent
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState
from cp_debug.bisect.verdict import ordered

__all__ = ["LOOK", "look_inside", "within_confirmed"]

LOOK = 0.25  # a block's own segment at this share of its budget, or more, is looked into (a healthy one: ≲ 0.2)


def _unconfirmed_size(state: CandidateState, rc: str) -> float | None:
    """The proposed root's own error ÷ budget where the intervention did not confirm it and its kind does not rank
    it first by right (NaN/Inf, a shape); else None (nothing to look for)."""
    from cp_debug.bisect.findings.intervention import confirmed_at
    from cp_debug.bisect.ranking import own_error
    from cp_debug.compare.diff import BROKEN

    r = state.results.get(rc)
    if r is None or confirmed_at(state, rc) or state.intervention is None:
        return None
    if (r.local.status if r.local is not None else r.status) in BROKEN:
        return None
    return own_error(r)


def _ratio(r: ProbeResult) -> float:
    return r.local_judgement.noise_ratio if r.local_judgement is not None else 0.0


def look_inside(rs: RunState, state: CandidateState, results: list[ProbeResult], measure,
                proposed: str | None = None) -> tuple[str, str | None, list[str]] | None:
    """(root cause, first divergent, path) inside the block that brings the most error of its own, where one of its
    layers is beyond its budget on its own (module docstring) — and, where a root cause was `proposed` and not
    confirmed at the outputs, its own error ÷ budget larger than the proposal's —; None otherwise.
    `measure(stage, probes, state)` measures probes of a stage for the candidate (the engine's)."""
    above, skip = 0.0, proposed
    if proposed is not None:
        size = _unconfirmed_size(state, proposed)
        if size is None:
            return None
        above = size
    blocks = [r for r in results if r.probe in rs.probes and rs.probes[r.probe].kind == "module"
              and r.probe != skip and not (skip and skip.startswith(r.probe + "."))]
    block = max(blocks, key=_ratio, default=None)
    if block is None or not _ratio(block) >= LOOK:
        return None
    p = rs.probes[block.probe]
    st = rs.stage_of(state.label, p.stage)
    tr = st.trace()
    if not st.has_module or tr is None:  # an ONNX-only stage probes every tensor at its default level
        return None
    mapped = st.probe_map().tensors if state.spec.runs_onnx or rs.ref_spec.runs_onnx else None
    pos = {n: k for k, n in enumerate(tr.order)}
    layers = [ProbeSpec(q, p.stage, "module", float(pos[q]), parent=p.name, depth=p.depth + 1) for q in tr.order
              if q.startswith(p.name + ".") and tr.is_leaf(q) and q not in state.results
              and (mapped is None or q in mapped)]
    if not layers:
        return None
    for k in layers:
        rs.probes.setdefault(k.name, k)
    measure(p.stage, layers, state)
    judge_small_terms(rs, state, [k.name for k in layers])
    sub = ordered(state, layers)
    beyond = [r for r in sub if beyond_locally(r) and _ratio(r) > above]
    if not beyond:  # the block's layers are within their budgets: the report as at the block level
        for k in layers:
            state.results.pop(k.name, None)
        return None
    rc = max(beyond, key=_ratio).probe
    return rc, first_divergent(sub) or rc, [block.probe, rc]


def within_confirmed(run: RunState, state: CandidateState, rc: str, kids: list[ProbeSpec]) -> list[ProbeSpec]:
    """The children of `rc` its refinement may descend into: where the intervention confirmed `rc` alone (its nodes
    restored bring the outputs back), those holding a node of that cure — a child the restoration did not touch is
    not where the output came back (g2pM's classifier exported by torch's dynamo exporter: its last Gemm confirmed,
    the refinement of that probe into the Sequential's layers named the Gemm before it, whose restoration leaves the
    reading changed); every child otherwise."""
    from cp_debug.bisect.cures.restore import own_nodes

    found = state.intervention
    keep = set(found.keep()) if found is not None and found.confirmed == rc and not found.confirmed_set else set()
    if not keep:
        return kids
    return [k for k in kids if (got := own_nodes(run, state, k.name)) is not None and got[1] & keep]

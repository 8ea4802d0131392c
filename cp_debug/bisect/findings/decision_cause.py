"""Where a decision is the root cause, what the rest of the run is judged at (issue 108).

The root cause is the probe whose own error stands furthest beyond its budget (`ranking.py`); where that probe's
segment holds a decision the format cannot keep (a TopK, ArgMax or softmax between near ties, a float made an index:
`choice_flip.known_flip`), the verdict names the decision, and its probe's own error is the flip's, not a layer's
fault. Every probe computed from the decision reads its other choice, so the outcome is judged at the causes before
it: the largest own error among the probes that do not depend on the decision (`beside`), and the reason says the
decision too (`with_decision`).
"""

from __future__ import annotations

from cp_debug.bisect.ranking import causes
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, RunState


def beside(results: list[ProbeResult], fd: str | None, after: frozenset[str]) -> str | None:
    """The root cause the outcome is judged at where a decision is the run's: the first of `causes` that is not
    computed from the decision (`after`: `computed_from`'s probes), None where none is."""
    return next((p for p in causes(results, fd) if p not in after), None)


def with_decision(reason: str, flip) -> str:
    """The outcome's reason, with the decision that is the root cause."""
    what = getattr(flip, "what", None) or getattr(flip, "op", "decision")
    where = f"{flip.module}: " if getattr(flip, "module", None) else ""
    return (f"{reason}; the root cause is a decision, {where}{what} {flip.node!r} at {flip.probe}: a near tie the "
            "format cannot keep, and every probe computed from it reads its other choice")


def computed_from(run: RunState, state: CandidateState, flip) -> set[str]:
    """The measured probes computed from the decision: its stage's probes whose tensor depends on the node's outputs,
    and every probe of a later stage."""
    from cp_debug.bisect.findings.choice_runs import downstream

    p = run.probes.get(flip.probe)
    if p is None:
        return {flip.probe}
    st = run.stage_of(state.label, p.stage)
    graph = st.onnx().graph
    node = next((n for n in graph.node if n.name == flip.node), None)
    tensors = downstream(graph, [t for t in node.output if t]) if node is not None else set()
    pm = st.probe_map()
    out = {flip.probe}
    for name in state.results:
        q = run.probes.get(name)
        if q is None:
            continue
        tensor = name if q.kind in ("input", "output") else (pm.tensors.get(name) if pm is not None else None)
        if q.stage > p.stage or (q.stage == p.stage and tensor in tensors):
            out.add(name)
    return out

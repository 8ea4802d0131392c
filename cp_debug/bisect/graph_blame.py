"""A deployed graph's own nodes as the root cause: where the divergence arises in a segment that holds a node with no
counterpart in the reference (an inserted Clip, a dropped Sigmoid, a fused op), that node is named.

The probes only see tensors both graphs have, so an extra op shows up as error in the probe after it — the next
layer, whose own computation is fine. The root cause's segment is walked back from its tensor to the tensors this
candidate measured before it (on each side: the deployed file for its extra nodes, the reference's export for the
ones it lacks); the unmatched nodes of `probes/graph_diff.py` found there are the cause. Casts and Q/DQ nodes of the
files' precision, and an exporter's own way of writing weights and shapes (`UnmatchedNode.form`), are never blamed.
"""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.probes.graph_diff import GraphDifferences, UnmatchedNode


@dataclass(frozen=True)
class GraphBlame:
    """For one candidate: its graphs' differences (None: not a deployed candidate) and those in its root cause's
    segment, which the hint names first."""

    differences: GraphDifferences | None = None
    in_segment: tuple[UnmatchedNode, ...] = ()

    def hint(self, hint: str | None) -> str | None:
        if not self.in_segment:
            return hint
        nodes = "; ".join(f"{n.describe()} is {n.where}" for n in self.in_segment)
        text = f"{nodes}: the divergence comes from a graph difference, not the layers' arithmetic"
        return f"{text}; {hint}" if hint else text


def graph_blame(run: RunState, state: CandidateState, rc: str | None) -> GraphBlame:
    """The differences of `state`'s deployed files, and those that lie in root cause `rc`'s segment."""
    found = run.deployed.get(state.label)
    if found is None:
        return GraphBlame()
    differences = found.graph_differences
    p = run.probes.get(rc) if rc else None
    if p is None or p.kind == "input" or not differences.computation:
        return GraphBlame(differences)
    stage = found.differences[p.stage]
    measured = [n for n, r in state.results.items()
                if r.diff is not None and n != rc and run.probes[n].stage == p.stage]
    hits: list[UnmatchedNode] = []
    for view, nodes in ((found.stages[p.stage], stage.only_in_candidate),
                        (run.subject.stages[p.stage], stage.only_in_reference)):
        nodes = [n for n in nodes if not n.form]
        if nodes:
            made = _segment_tensors(view, rc, p.kind, [(n, run.probes[n].kind) for n in measured])
            hits += [n for n in nodes if made & set(n.outputs)]
    return GraphBlame(differences, tuple(hits))


def _segment_tensors(stage, rc: str, kind: str, measured: list[tuple[str, str]]) -> set[str]:
    """The tensors computed on the way from the measured probes' tensors to `rc`'s, in `stage`'s graph."""
    from cp_debug.graph.plan import cut_segment

    pm = stage.probe_map()
    target = rc if kind == "output" else pm.tensors.get(rc)
    if target is None:
        return set()
    known = {n if k in ("input", "output") else pm.tensors.get(n) for n, k in measured} - {None, target}
    model = stage.onnx()
    return {t for k in cut_segment(model, [target], known).nodes for t in model.graph.node[k].output if t}

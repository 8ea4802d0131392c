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
    clamped: tuple = ()  # the weights of the segment its file's FP16 conversion clamped (`lint.weights.Clamp`)
    scales: tuple[str, ...] = ()  # the segment's Q/DQ scales the file holds as inf, NaN or 0 (`qdq_file_why`)
    rewired: str = ""  # the segment computed from other probes' tensors than the reference's (`_rewired`)

    def hint(self, hint: str | None) -> str | None:
        # a segment reading other tensors is the wiring's, its own nodes said beside it (`_rewired` leaves out a fused
        # op reading the entries)
        said = [*self.scales, *([self.rewired + self._beside()] if self.rewired else [])]
        if self.clamped:
            weights = "; ".join(c.line() for c in self.clamped)
            said.append(f"the file's weight differs from the model's here: {weights} — the file computes another "
                        "layer (convert it again with a larger max_finite_val, or keep the layer in FP32)")
        if self.in_segment and not said:  # the file's own faults there first: a difference beside them is no why
            nodes = "; ".join(f"{n.describe()} is {n.where}" for n in self.in_segment[:_NAMED])
            more = f" (and {len(self.in_segment) - _NAMED} more)" if len(self.in_segment) > _NAMED else ""
            said.append(f"{nodes}{more}: the divergence comes from a graph difference, not the layers' arithmetic"
                        + _norms(self.in_segment, self.differences))
        if not said:
            return hint
        from cp_debug.bisect.findings.hints import CONFIRMED, rounding_only

        if (self.clamped or self.scales) and rounding_only(hint):  # the why the fallback did not know
            _, confirmed, words = hint.partition(CONFIRMED)  # the intervention's words stay
            hint = CONFIRMED.lstrip("; ") + words if confirmed else None
        return "; ".join(said + ([hint] if hint else []))

    def _beside(self) -> str:
        """The segment's own nodes, said after its wiring (builder 0.18.0's lm_head of another Linear: its bias Add)."""
        if not self.in_segment:
            return ""
        return "; beside it " + ", ".join(f"{n.describe()} is {n.where}" for n in self.in_segment[:_NAMED])


_NAMED = 4  # unmatched nodes a hint names; the report's graph_differences list them all


def _norms(nodes: tuple[UnmatchedNode, ...], differences: GraphDifferences | None) -> str:
    """What a normalisation of another kind or epsilon on each side means (`graph_diff.MEAN_NORMS` / `RMS_NORMS`),
    with how many of the reference's norms differ so."""
    from cp_debug.probes.graph_diff import CANDIDATE, MEAN_NORMS, eps_key

    ours = [n for n in nodes if n.side == CANDIDATE and n.eps is not None]
    theirs = [n for n in nodes if n.side != CANDIDATE and n.eps is not None]
    if differences and (ours or theirs):  # the other side's norm may lie a probe before (a plain export's LayerNorm)
        ours = ours or [n for n in differences.only_in_candidate if n.eps is not None]
        theirs = theirs or [n for n in differences.only_in_reference if n.eps is not None]
    if not ours or not theirs:
        return ""
    every = sum(n.eps is not None for n in differences.only_in_reference) if differences else len(theirs)
    mine, other = {n.op_type in MEAN_NORMS for n in ours}, {n.op_type in MEAN_NORMS for n in theirs}
    if mine == {False} and other == {True}:
        what, cure = ("normalises by the root mean square without removing the mean, where the reference's "
                      "LayerNorm removes it", "as a LayerNorm")
    elif mine == {True} and other == {False}:
        what, cure = "removes the mean before normalising, where the reference's RMSNorm does not", "as an RMSNorm"
    elif eps_key(ours[0].eps) == eps_key(theirs[0].eps):
        return ""  # the same norm on both sides: unpaired for another reason
    else:
        what = f"adds epsilon {ours[0].eps:.3g} to the variance, where the reference adds {theirs[0].eps:.3g}"
        cure = f"with the model's epsilon ({theirs[0].eps:.3g})"
    if {eps_key(n.eps) for n in ours} != {eps_key(n.eps) for n in theirs} and "epsilon" not in what:
        what += f" (epsilon {ours[0].eps:.3g} against {theirs[0].eps:.3g})"
    return f" (the deployed graph {what}: the file computes another norm, {every} of the reference's so — convert " \
           f"them {cure})"


def norms_line(found) -> str:
    """`_norms` over the whole graph's differences of a deployed file (`found`: the run's `deployed` record, or None),
    as a verdict's clause ("" where its norms are the reference's)."""
    differences: GraphDifferences | None = found.graph_differences if found is not None else None
    if not differences:
        return ""
    said = _norms(differences.only_in_candidate + differences.only_in_reference, differences)
    return f"; but the file's norms differ from the model's{said}" if said else ""


def graph_blame(run: RunState, state: CandidateState, rc: str | None) -> GraphBlame:
    """The differences of `state`'s deployed files, and those that lie in root cause `rc`'s segment."""
    found = run.deployed.get(state.label)
    if found is None:
        return GraphBlame()
    differences = found.graph_differences
    p = run.probes.get(rc) if rc else None
    if p is None or p.kind == "input":
        return GraphBlame(differences)
    stage = found.differences[p.stage]
    clamps = found.clamps[p.stage] if p.stage < len(found.clamps) else ()
    measured = [(n, run.probes[n].kind) for n, r in state.results.items()
                if r.diff is not None and n != rc and run.probes[n].stage == p.stage]
    deployed = _segment_nodes(found.stages[p.stage], rc, p.kind, measured)  # the file's nodes of the segment
    hits = _made_in(deployed, stage.only_in_candidate)
    own = frozenset(t for n in hits for t in n.outputs)
    rewired = _rewired(found.stages[p.stage], run.subject.stages[p.stage], rc, p.kind, measured, own)
    if any(not n.form for n in stage.only_in_reference):
        hits += _made_in(_segment_nodes(run.subject.stages[p.stage], rc, p.kind, measured), stage.only_in_reference)
    read = {t for n in deployed for t in n.input if t}
    from cp_debug.bisect.findings.quantized.scale_fault import scale_faults

    scales = tuple(scale_faults(found.stages[p.stage].onnx(), deployed))
    return GraphBlame(differences, tuple(hits), tuple(c for c in clamps if c.tensor in read), scales, rewired)


def _made_in(segment: list, nodes: tuple[UnmatchedNode, ...]) -> list[UnmatchedNode]:
    """The unmatched `nodes` (precision and the exporters' forms aside) whose outputs the `segment`'s nodes make."""
    made = {t for n in segment for t in n.output if t}
    return [n for n in nodes if not n.form and made & set(n.outputs)]


def _segment_nodes(stage, rc: str, kind: str, measured: list[tuple[str, str]]) -> list:
    """The nodes that compute `rc`'s tensor from the measured probes' tensors in `stage`'s graph."""
    seg = _segment(stage, rc, kind, measured)
    return [] if seg is None else [stage.onnx().graph.node[k] for k in seg.nodes]


def _segment(stage, rc: str, kind: str, measured: list[tuple[str, str]]):
    """`rc`'s segment (`plan.Segment`) in `stage`'s graph, cut at the measured probes' tensors; None: unmapped."""
    from cp_debug.graph.plan import cut_segment

    pm = stage.probe_map()
    target = rc if kind == "output" else pm.tensors.get(rc)
    if target is None:
        return None
    known = {n if k in ("input", "output") else pm.tensors.get(n) for n, k in measured} - {None, target}
    return cut_segment(stage.onnx(), [target], known)


def _rewired(deployed, reference, rc: str, kind: str, measured: list[tuple[str, str]],
             own: frozenset[str] = frozenset()) -> str:
    """A segment the file computes from other measured tensors than the reference's: the probes its entries are on
    each side, where the two share none (the builder's Granite-4 lm_head reading layer 0's post-attention norm, the
    final norm's output left unread): the file wires another tensor into it. "" where they share one, either side
    reads none (a graph input, a constant), or a node of the file's own (`own`: the outputs of its unmatched nodes in
    the segment) reads an entry — a fused op reading other tensors than the module it replaces (OLMo's
    SkipSimplifiedLayerNormalization, the residual's summands for their sum), not a wiring; a node of its own that
    reads none is said beside the wiring (the builder's lm_head of another Linear, with that Linear's bias Add)."""
    from cp_debug.errors import BadInputError

    def entries(stage, mine: frozenset[str]) -> list[str] | None:  # None: a node of `mine` reads an entry
        try:
            seg = _segment(stage, rc, kind, measured)
        except BadInputError:
            return []
        if seg is None:
            return []
        by_tensor = {}
        for name, _ in measured:
            by_tensor.setdefault(stage.probe_map().tensors.get(name), name)
        read = {t for t in seg.inputs if t in by_tensor}
        nodes = (stage.onnx().graph.node[k] for k in seg.nodes)
        if any(mine & set(n.output) and read & set(n.input) for n in nodes):
            return None
        return list(dict.fromkeys(by_tensor[t] for t in seg.inputs if t in by_tensor))

    ours, theirs = entries(deployed, own), entries(reference, frozenset())
    if not ours or not theirs or set(ours) & set(theirs):
        return ""
    return (f"the file computes {rc} from {', '.join(ours[:3])}'s output, where the reference computes it from "
            f"{', '.join(theirs[:3])}'s: it wires another tensor into {rc} (the converter's wiring, not the layers' "
            "arithmetic)")

"""The runs `choice_flip.py` reads: a stage in FP32 on the reference's feed and as the candidate runs it, the
decisions' inputs and outputs exposed (a TopK's / ArgMax's indices, a comparison's booleans, an NMS's kept boxes); the
same stage as the candidate on the reference's choice (those outputs fed in as graph inputs); and the outputs after a
TopK compared as sets, rows matched by the member each holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cp_debug.bisect.findings.choice_members import COMPARISONS, Members, constants, setting
from cp_debug.bisect.findings.flip_why import DECISION_OPS
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare import noise
from cp_debug.compare.diff import TensorDiff

DECIDING = (*DECISION_OPS, *COMPARISONS, "NonMaxSuppression")  # the ops whose output is a choice


@dataclass(frozen=True)
class ChoiceRuns:
    """The first decision of stage `stage` the candidate took otherwise, with what the runs showed."""

    stage: int
    model: Any  # the stage's onnx.ModelProto
    node: Any  # the decision's NodeProto
    members: Members
    after_tensors: set  # the tensors that depend on a decision the candidate took otherwise
    ref_idx: dict  # decision tensor -> the reference's value (indices, booleans), each taken otherwise
    rows: tuple | None  # a TopK's / ArgMax's (the reference's indices, the candidate's), rows × k
    lead: tuple  # the shape of the rows before the decision's axis (the batch)
    cand: dict  # the candidate's own values of the stage's outputs
    read: float  # the worst error ÷ budget of the values the decision reads (its scores, boxes), the candidate's own

    def locked_ratios(self, run: RunState, state: CandidateState, after: list[str]) -> dict[str, float] | None:
        """Each probe in `after`: its error ÷ budget with the candidate on the reference's choice; None where one
        is off by more than its budget (or broken)."""
        pm = run.stage_of(state.label, self.stage).probe_map()
        tensors = {n: _tensor(run, n, pm) for n in after}
        model = _locked(self.model, self.ref_idx)
        feed = {**state.feeds[self.stage], **self.ref_idx}
        got = _run(run, state, model, feed, [t for t in tensors.values() if t])
        ratios = {}
        for name, t in tensors.items():
            ref = _reference(run, self.stage, name, t)
            if ref is None or t not in got:
                continue
            ratio = _ratio(run, state, name, ref, got[t])
            if ratio is None:
                return None
            ratios[name] = ratio
        return ratios or None

    def as_sets(self, run: RunState, state: CandidateState) -> tuple[tuple[str, ...], float] | None:
        """The stage's outputs after the decision, each with an axis of the k chosen rows compared with its rows
        matched by the member each holds (the others as they are): the names compared as sets and the worst error ÷
        budget (inf where one is off); None where a member was replaced or no output is a set."""
        if self.rows is None or self.members.replaced:
            return None
        ref_idx, cand_idx = self.rows
        perm = np.stack([np.argsort(c)[np.searchsorted(c, r, sorter=np.argsort(c))] for r, c in zip(ref_idx, cand_idx)])
        names, worst = [], 0.0
        for out in run.stage_of(state.label, self.stage).output_names:
            ref, got = _reference(run, self.stage, out, out), self.cand.get(out)
            if out not in self.after_tensors or ref is None or got is None:
                continue
            matched = _matched(np.asarray(got), perm, self.lead, self.members.chosen)
            if matched is not None:
                names.append(out)
            ratio = _ratio(run, state, out, ref, matched if matched is not None else got)
            worst = max(worst, ratio if ratio is not None else float("inf"))
        return (tuple(names), worst) if names else None


def choice_runs(run: RunState, state: CandidateState, i: int) -> ChoiceRuns | None:
    """Stage i run in FP32 on the reference's feed and as the candidate on its own, the decisions' inputs and outputs
    exposed; the first decision the candidate took otherwise, or None where it took every one as the reference."""
    st = run.stage_of(state.label, i)
    model = st.onnx()
    graph = model.graph
    decisions = [n for n in graph.node if n.op_type in DECIDING and n.input and _index(n)]
    made = {t for n in graph.node if n.op_type != "Constant" for t in n.output if t}
    outs = [o.name for o in graph.output]
    inputs = [t for n in decisions for t in n.input[:2] if t]
    wanted = [t for t in dict.fromkeys(inputs + [_index(n) for n in decisions] + outs) if t in made]
    consts = constants(graph, [t for n in decisions for t in n.input if t and t not in made])
    ref = {**consts, **run.ref_feeds[i], **_run(run, None, model, run.ref_feeds[i], wanted)}
    cand = {**consts, **state.feeds[i], **_run(run, state, model, state.feeds[i], wanted)}
    taken = [n for n in decisions if _index(n) in ref and _index(n) in cand and _differs(ref[_index(n)],
                                                                                       cand[_index(n)])]
    if not taken:
        return None
    node, prec = taken[0], state.judged_at or state.spec.precision
    rows, lead = None, ()
    if node.op_type in COMPARISONS:
        if not all(np.issubdtype(np.asarray(ref[t]).dtype, np.floating) for t in node.input[:2]):
            return None  # shape arithmetic: no rounding
        members = Members.threshold_of(tuple(ref[t] for t in (*node.input[:2], node.output[0])),
                                       tuple(cand[t] for t in (*node.input[:2], node.output[0])), prec)
    elif node.op_type == "NonMaxSuppression":
        iou, score = (setting(node, k, ref) for k in (3, 4))
        members = Members.nms_of(ref, cand, node, iou or 0.0, score, prec)
    else:
        x_ref, x_cand = ref.get(node.input[0]), cand.get(node.input[0])
        if x_ref is None or x_cand is None or x_ref.shape != x_cand.shape:
            return None
        r_idx, lead = _rows(node, ref[_index(node)], x_ref.ndim)
        c_idx, _ = _rows(node, cand[_index(node)], x_ref.ndim)
        members = Members.compare(r_idx, c_idx, _rows(node, x_ref, x_ref.ndim, keep=True)[0],
                                  _rows(node, x_cand, x_ref.ndim, keep=True)[0], prec)
        rows = (r_idx, c_idx)
    after = downstream(graph, [t for n in taken for t in n.output if t])
    reads = [t for t in node.input[:2 if node.op_type in (*COMPARISONS, "NonMaxSuppression") else 1]
             if t and t not in consts]
    ratios = [_ratio(run, state, t, ref[t], cand[t]) for t in reads if t in ref and t in cand]
    read = max((r if r is not None else float("inf") for r in ratios), default=0.0)
    return ChoiceRuns(i, model, node, members, after, {_index(n): ref[_index(n)] for n in taken}, rows, lead,
                      {o: cand[o] for o in outs if o in cand}, read)


def _differs(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape != b.shape or bool((a != b).any())


def _index(node) -> str | None:
    """The tensor holding a decision (TopK's indices, its second output; the only output of the others)."""
    i = 1 if node.op_type == "TopK" else 0
    return node.output[i] if len(node.output) > i and node.output[i] else None


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rows(node, a: np.ndarray, ndim: int, keep: bool = False) -> tuple[np.ndarray, tuple]:
    """`a` (the decision's input with `keep`, else its indices) as rows × the decision's axis, and the shape of the
    rows (the other axes, in order)."""
    attrs = _attrs(node)
    axis = attrs.get("axis", -1 if node.op_type == "TopK" else 0) % ndim
    if not keep and node.op_type != "TopK" and not attrs.get("keepdims", 1):
        a = np.expand_dims(a, axis)
    moved = np.moveaxis(np.asarray(a), axis, -1)
    return moved.reshape(-1, moved.shape[-1]), moved.shape[:-1]


def downstream(graph, tensors: list[str]) -> set[str]:
    """`tensors` and every tensor computed from them (the graph's nodes in topological order)."""
    seen = set(tensors)
    for node in graph.node:
        if seen & set(node.input):
            seen.update(t for t in node.output if t)
    return seen


def _locked(model, ref_idx: dict):
    """`model` with each decision whose output `ref_idx` holds taking it as a graph input: a TopK's values then
    gathered from its own input at those indices (GatherElements on its axis)."""
    from onnx import helper

    from cp_debug.graph.onnx_files import copy_model

    m = copy_model(model)
    nodes = []
    for node in m.graph.node:
        if node.op_type not in DECIDING or _index(node) not in ref_idx:
            nodes.append(node)
            continue
        if node.op_type == "TopK" and node.output[0]:
            axis = _attrs(node).get("axis", -1)
            nodes.append(helper.make_node("GatherElements", [node.input[0], _index(node)], [node.output[0]],
                                          name=node.name, axis=axis))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    kept = [v for v in m.graph.value_info if v.name not in ref_idx]
    del m.graph.value_info[:]
    m.graph.value_info.extend(kept)
    for name, v in ref_idx.items():
        elem = helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype)
        m.graph.input.append(helper.make_tensor_value_info(name, elem, list(np.shape(v))))
    return m


def _run(run: RunState, state: CandidateState | None, model, feed: dict, outputs: list[str]) -> dict:
    """`model` run in FP32 (ONNX Runtime on the CPU: `state` None) or as `state`'s candidate, `outputs` exposed."""
    from cp_debug.bisect.findings.segment_why import run_segment

    if state is None:
        return run_segment(run, "ort", model, feed, outputs, facts=False).values
    return run_segment(run, str(state.spec), model, feed, outputs, spec=state.spec, facts=False).values


def _tensor(run: RunState, name: str, pm) -> str | None:
    p = run.probes[name]
    return name if p.kind in ("input", "output") else (pm.tensors.get(name) if pm is not None else None)


def _reference(run: RunState, i: int, name: str, tensor: str | None):
    if name in run.store:
        return np.asarray(run.store.get(name))
    out = run.ref_outputs.get(i, {})
    return np.asarray(out[tensor]) if tensor in out else None


def _ratio(run: RunState, state: CandidateState, name: str, ref: np.ndarray, got: np.ndarray) -> float | None:
    """`got`'s error ÷ its budget against `ref` (the run's judge), None where the probe's word is not ok."""
    from cp_debug.half import as_float32

    d = TensorDiff.from_arrays(name, ref, np.asarray(as_float32(np.asarray(got))), run.tolerance(state, name))
    j = run.judge(state, name, d)
    return j.noise_ratio if noise.status_of(d, j) == "ok" else None


def _matched(got: np.ndarray, perm: np.ndarray, lead: tuple, k: int) -> np.ndarray | None:
    """`got` with the rows of its first axis of length k after the batch axes `lead` put in the reference's order
    (`perm`: rows × k, the candidate's position of each reference member); None where it has no such axis."""
    n = len(lead)
    if got.ndim <= n or tuple(got.shape[:n]) != tuple(lead):
        return None
    axis = next((a for a in range(n, got.ndim) if got.shape[a] == k), None)
    if axis is None:
        return None
    moved = np.moveaxis(got, axis, n)
    flat = moved.reshape(int(np.prod(lead, dtype=np.int64)), k, -1)
    out = np.stack([flat[r, perm[r]] for r in range(flat.shape[0])])
    return np.moveaxis(out.reshape(moved.shape), n, axis)

"""A decision that flips in a candidate `choice_flip.py` does not measure: INT8 / FP8 (the built-in's quantization or
a user's Q/DQ file), a user's FP16 file (issue 115, item 2: the reason is the mechanism the data shows).

g2p_en's INT8 decodes greedily inside its graph: each step's `ArgMax` picks the token the next step's `Gather` embeds.
Where the logits' INT8 rounding moves a near tie apart, the choice flips and the decoder runs on another path; the
reason said "a Gather … rounds far worse than its kind" (`flip_why.py` reads FP16 / BF16 steps only, `choice_flip.py`
runs FP16 / BF16 built-in candidates only). Here the first divergent probe's stage is run twice, its decisions' inputs
and outputs exposed — in FP32 on the reference's stage inputs, and as the candidate runs it on the same inputs (the
built-in INT8 calibrated as it was, `RunState.calib`; a user's file as it is) —, and the first decision (in the
graph's order) that the candidate takes otherwise, upstream of that probe or of the root cause, is read (said at the
first of them it reaches): which one (its place among the graph's decisions of its op: the step of an unrolled
decoder), the rows that flip and each side's choice there, the reference's margin between the two choices, the
candidate's own error at them, and the format's rounding step there — a Q/DQ pair's scale on the values the decision
reads (its `DequantizeLinear`, or a `QuantizeLinear` reading them), in the candidate's Q/DQ graph; float16's /
bfloat16's spacing for a float file. It is a finding only where the values the decision reads are within the
candidate's expected rounding (their error ÷ budget ≤ 1: else the flip follows an upstream fault) and the margin lies
within what the candidate's rounding moved them by. Its words stand as the whole reason (`Finding.mechanism`), and what
else the report says is said beside it (`Finding.tie`: no single layer restored brings the outputs back because the
rounding of several layers tips the near tie; a layer whose own error stands out is no cause of its own); the
outcome stays the noise model's — the outputs after a flip do differ; a declared `--metric` judges the decision. Cost:
two runs of the stage (one quantization of it), only where a decision sits upstream of the first divergent probe,
within the screen's sizes. Where the intervention confirms a layer upstream of the decision (left out of the format,
this input's choice comes back), the flip is said at that layer as how its rounding breaks the outputs (`tipped_by`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.bisect.findings.choice_members import COMPARISONS, Members
from cp_debug.bisect.findings.contract import Candidate, Finding, Role, Segment
from cp_debug.bisect.findings.flip_why import DECISION_OPS
from cp_debug.bisect.run_state import CandidateState, RunState

READS = (*DECISION_OPS, *COMPARISONS)
HALF = ("fp16", "bf16")  # the built-in's: `choice_flip.py` measures them


@dataclass(frozen=True)
class QuantizedFlip:
    """A decision upstream of the first divergent probe that the candidate took otherwise (see the module)."""

    probe: str  # the first divergent probe (else the root cause) computed from it
    node: str
    op: str
    module: str | None
    members: Members
    place: tuple[int, int]  # the decision's place among the graph's decisions of its op (1-based), and how many
    rows: tuple[tuple[int, str, str], ...]  # up to 3 flipped rows: (row, the reference's choice, the candidate's)
    read: float  # the error ÷ budget of the values it reads (the candidate's own, on the reference's inputs)
    step_from: str  # where the step comes from: a Q/DQ pair's scale on a tensor, a float format's spacing
    precision: str

    @property
    def gap(self) -> float:  # the number the finding rests on (`examiners/where.NearTie`'s figure)
        return self.members.margin

    def _steps(self) -> str:
        m = self.members
        if m.step <= 0:
            return "no rounding step known there (no Q/DQ pair on the values it reads)"
        return f"{m.margin / m.step:.3g} of {self.precision}'s rounding steps there ({self.step_from}: {m.step:.3g})"

    def text(self) -> str:
        m, (k, n) = self.members, self.place
        where = f"{self.module}: " if self.module else ""
        at = f"the {ordinal(k)} of the graph's {n} {self.op} nodes" if n > 1 else f"the graph's only {self.op}"
        rows = "; ".join(f"row {r}: {a} → {b}" for r, a, b in self.rows)
        if m.kind == "threshold":
            moved = (f"{m.replaced} of {m.rows} comparison(s) came out otherwise ({rows}); their values lie "
                     f"{m.margin:.3g} from the threshold ({m.threshold:.4g}) in the reference")
        else:
            moved = (f"{m.flipped_rows} of {m.rows} row(s) chose otherwise (the reference's choice → the "
                     f"candidate's: {rows}); the reference's values at the two choices lie {m.margin:.3g} apart")
        moved_by = (f"within what the candidate's own rounding moved them by ({m.error:.3g})" if m.margin <= m.error
                    else f"within one step (the candidate's own rounding moved them by {m.error:.3g})")
        return (f"decision flip at {where}{self.op} {self.node!r}, {at}: {moved}, {self._steps()}, {moved_by}; the "
                f"values it reads are within "
                f"{self.precision}'s expected rounding ({self.read:.2g}× their budget): a near tie the format's "
                f"rounding moves apart, so the choice flips and everything computed from it reads the other choice "
                f"({self.probe} among them) — not a layer's rounding (leaving layers out of "
                f"{self.precision} cures an input only by chance); judge the outputs at the decision (--metric), or "
                "widen the margin")

    def tipped_by(self, found: Finding, root: str) -> Finding:
        """`found` (this flip's finding) said at `root`, a layer upstream of the decision that the intervention
        confirmed: left out of the format it brings the outputs back, the choice with them — its rounding tipped the
        near tie on this input, and the flip is how it breaks them."""
        return replace(found, probe=root, text=(
            f"its {self.precision} rounding tips a near tie downstream (left out of {self.precision} the outputs "
            f"come back, the choice with them: below): {self.text()}"))


@dataclass(frozen=True)
class QuantizedChoice:
    """A TopK / ArgMax / threshold upstream of the first divergent probe that a candidate `MeasuredChoice` does not
    measure (INT8, FP8, a user's file) took otherwise, read on the stage run in FP32 and as the candidate runs it
    (above): its words the whole reason, the outcome the noise model's."""

    fault: str = "decision flip"
    role: Role = Role.WHERE

    def applies(self, c: Candidate) -> bool:
        return c.ran and c.spec.can(Capability.ORT_SESSIONS) and not (c.precision in HALF and not c.own_files)

    def examine(self, seg: Segment) -> Finding | None:
        if seg.root is None or seg.first_divergent is None:
            return None
        flip = quantized_flip(seg.run, seg.state, list(dict.fromkeys([seg.first_divergent, seg.root])))
        if flip is None:
            return None
        return Finding(self.fault, self.role, flip.probe, flip.text(), flip.gap, mechanism=True, detail=flip,
                       tie=f"{flip.op} {flip.node!r}")


def ordinal(k: int) -> str:
    """1st, 2nd, 3rd, 4th, …, 11th, 12th, 13th, 21st (the place of a node among its kind, of an expert in a top-k)."""
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def quantized_flip(run: RunState, state: CandidateState, probes: list[str]) -> QuantizedFlip | None:
    """The decision flip upstream of `probes` (the first divergent probe, the root cause: see the module docstring),
    said at the first of them it reaches, or None."""
    from cp_debug.bisect.findings.op_findings import NamedStage
    from cp_debug.bisect.findings.segment_why import run_segment
    from cp_debug.bisect.stages.fits import subject_weights
    from cp_debug.bisect.stages.screen import CUDA_SCREEN_UP_TO, SCREEN_UP_TO

    p = run.probes.get(probes[0]) if probes else None
    if p is None or any(run.probes[n].stage > p.stage for n in state.results if n in run.probes):
        return None  # later stages ran on the candidate's own choice: their feeds are not the reference's
    i, st = p.stage, run.stage_of(state.label, p.stage)
    graph = st.onnx().graph
    pm = st.probe_map()
    behind = {}  # each probe of the stage -> the tensors it is computed from
    for name in probes:
        q = run.probes.get(name)
        if q is not None and q.stage == i:
            tensor = name if q.kind in ("input", "output") else (pm.tensors.get(name) if pm is not None else None)
            behind[name] = _ancestors(graph, tensor) if tensor else set()
    made = {t for nd in graph.node for t in nd.output if t}
    decisions = [nd for nd in graph.node if nd.op_type in READS and _choice_of(nd)
                 and any(_choice_of(nd) in b for b in behind.values()) and all(t in made for t in nd.input[:1])]
    if not decisions:
        return None
    if subject_weights(run.subject)[0] > (SCREEN_UP_TO if state.spec.device == "cpu" else CUDA_SCREEN_UP_TO):
        return None
    ref_model = run.subject.stages[i].onnx()
    ref_names = {t for nd in ref_model.graph.node for t in nd.output if t}
    reads = [t for nd in decisions for t in nd.input[:2] if t in made]
    wanted = list(dict.fromkeys([*reads, *(_choice_of(nd) for nd in decisions)]))
    floats = {t: _float_name(graph, t) for t in wanted}  # a user's file: the tensor its Q/DQ pair rounds
    ref = run_segment(run, "ort", ref_model, run.ref_feeds[i],
                      list(dict.fromkeys(f for f in floats.values() if f in ref_names)), facts=False).values
    ref = {**run.ref_feeds[i], **{t: ref[f] for t, f in floats.items() if f in ref}}
    got, qdq = _as_run(run, state, i, st.onnx(), wanted)
    at = {_choice_of(nd): next(name for name, b in behind.items() if _choice_of(nd) in b) for nd in decisions}
    return _first_flip(run, state, graph, decisions, ref, got, qdq, at, NamedStage.of(st))


def _first_flip(run: RunState, state: CandidateState, graph, decisions, ref: dict, got: dict, qdq, at: dict, named,
                stage=None) -> QuantizedFlip | None:
    """The first of `decisions` (in `graph`'s order) whose outputs differ between `ref` and `got`, read (see the
    module docstring): a flip where the values it reads are within their budget and the margin within what the
    candidate's rounding moved them; None where the first that differs is no such flip. `at`: each decision's
    output -> the probe the flip is said at; `stage`: the stage whose graph counts its place (else `graph`)."""
    from cp_debug.bisect.findings.choice_runs import _ratio, _rows
    from cp_debug.bisect.findings.op_findings import named_module

    prec = state.judged_at or state.spec.precision
    for node in decisions:
        a, b = ref.get(_choice_of(node)), got.get(_choice_of(node))
        x_ref, x_got = ref.get(node.input[0]), got.get(node.input[0])
        if a is None or b is None or np.shape(a) != np.shape(b) or not bool((np.asarray(a) != b).any()) \
                or x_ref is None or x_got is None or np.shape(x_ref) != np.shape(x_got) \
                or not np.issubdtype(np.asarray(x_ref).dtype, np.floating):
            continue
        if node.op_type in COMPARISONS:
            side = [ref.get(t, _const(graph, t)) for t in node.input[:2]]
            cside = [got.get(t, _const(graph, t)) for t in node.input[:2]]
            if any(v is None for v in (*side, *cside)):
                return None
            members = Members.threshold_of((*side, a), (*cside, b), prec)
            flips = np.flatnonzero(np.asarray(a).reshape(-1) != np.asarray(b).reshape(-1))
            rows = tuple((int(r), str(np.asarray(a).reshape(-1)[r]), str(np.asarray(b).reshape(-1)[r]))
                         for r in flips[:3])
        else:
            nd = np.ndim(x_ref)
            r_idx, c_idx = _rows(node, a, nd)[0], _rows(node, b, nd)[0]
            members = Members.compare(r_idx, c_idx, _rows(node, x_ref, nd, keep=True)[0],
                                      _rows(node, x_got, nd, keep=True)[0], prec)
            flips = np.flatnonzero((r_idx != c_idx).any(axis=1))
            rows = tuple((int(r), _choice(r_idx[r]), _choice(c_idx[r])) for r in flips[:3])
        step, step_from = _step(qdq, node, x_ref, members, prec)
        members = replace(members, step=step)
        ratio = _ratio(run, state, node.input[0], np.asarray(x_ref), np.asarray(x_got))
        read = ratio if ratio is not None else float("inf")
        if read > 1.0 or members.margin > max(members.error, step):
            return None  # the values it reads are off already, or the margin is wider than their rounding moved
        whole = stage.onnx().graph if stage is not None else graph
        same = [d for d in whole.node if d.op_type == node.op_type]
        k = next((k for k, d in enumerate(same, 1) if d.output[0] == node.output[0]), 0)
        return QuantizedFlip(at[_choice_of(node)], node.name, node.op_type, named_module(node, named), members,
                             (k, len(same)), rows, read, step_from, prec)
    return None




def _choice_of(node) -> str | None:
    """The output holding a decision's choice: a TopK's indices (its second), the only output of the others."""
    i = 1 if node.op_type == "TopK" else 0
    return node.output[i] if len(node.output) > i and node.output[i] else None


def _ancestors(graph, tensor: str) -> set[str]:
    """Every tensor `tensor` is computed from (its producers' inputs, back to the graph's inputs)."""
    writer = {o: n for n in graph.node for o in n.output if o}
    seen, todo = set(), [tensor]
    while todo:
        n = writer.get(todo.pop())
        for t in n.input if n is not None else ():
            if t and t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def _float_name(graph, t: str) -> str:
    """`t`, or where a DequantizeLinear writes it, the float tensor its QuantizeLinear read."""
    from cp_debug.graph.qdq_pair import float_behind

    return float_behind({o: n for n in graph.node for o in n.output}, t) or t


def _choice(idx: np.ndarray) -> str:
    return str(int(idx[0])) if idx.size == 1 else str([int(v) for v in idx])


def _const(graph, name: str):
    from cp_debug.bisect.findings.choice_members import constants

    return constants(graph, [name]).get(name)


def _as_run(run: RunState, state: CandidateState, i: int, model, outputs: list[str]) -> tuple[dict, object]:
    """Stage i as the candidate runs it (the built-in's quantization calibrated as it was; a user's file as it is) on
    the reference's stage inputs, `outputs` exposed: its values, and the Q/DQ graph it ran (None: none)."""
    from cp_debug.backends.factory import make_runner

    spec = state.spec
    kw = {"determinism": run.det, "spinning": False, "graph_facts": False, "check_model": False,
          **run.ort_kwargs(spec, model)}
    if spec.calibrated and spec.onnx_dir is None:
        kw["calib_feeds"] = run.calib(i)
    declared = {o.name for o in model.graph.output}
    with make_runner(spec, onnx_model=model, extra_outputs=[t for t in outputs if t not in declared], **kw) as r:
        out = r.infer(dict(run.ref_feeds[i]))
        q = getattr(r, "quantized", None)
    qdq = q.model if q is not None else model if any(n.op_type == "DequantizeLinear" for n in model.graph.node) \
        else None
    return {t: np.asarray(v) for t, v in out.items()}, qdq


def _step(qdq, node, x: np.ndarray, members: Members, precision: str) -> tuple[float, str]:
    """The rounding step at the values `node` reads: the scale of the Q/DQ pair on them in `qdq` (a per-tensor
    scale; float8: its spacing at the values there), else a float format's spacing; (0, "") where none is known."""
    from cp_debug.graph.qdq_pair import QdqIndex

    if qdq is not None:
        g = qdq.graph
        index = QdqIndex.of(qdq)
        mine = next((n for n in g.node if n.name == node.name and n.op_type == node.op_type), None)
        src = mine.input[0] if mine is not None else node.input[0]
        pair = index.pair(src)  # the DequantizeLinear writing it, else a QuantizeLinear reading it
        if pair is not None and pair.per_tensor:
            s = pair.step
            tensor = _float_name(g, src)
            if pair.is_float:  # float8: its mantissa's spacing at the values there
                return pair.spacing(float(np.max(np.abs(x)))), f"the FP8 Q/DQ pair on {tensor!r}, scale {s:.3g}"
            return s, f"the Q/DQ pair on {tensor!r}: one INT8 step, its scale"
    if precision in ("fp16", "bf16"):  # a float file: the format's spacing at the two values (`Members.compare`)
        return members.step, f"{precision}'s spacing at them"
    return 0.0, ""


"""A decision whose choice flips, measured: the candidate's choice against the reference's, and what follows it on the
reference's choice (issue 84, item 2: "decisions are decisions").

RT-DETR in FP16 swaps queries at the encoder's TopK: its scores (`enc_outputs_class`) within the precision, the
queries it gathers (`enc_topk_logits`) at a relative error 100× the scores' — and the root cause was named in the
decoder (`decoder.query_pos_head.layers.0`), "FP16 rounding introduced by this layer", a verdict of "diverged". The
TopK's segment reaches from the scores into the decoder, so its local error flips too, and `flip_why.py`'s reading
(local error within, propagated beyond) never saw it. Here the stage runs twice more with the decision's indices
exposed, once in FP32 on the reference's feed and once as the candidate runs it: where a TopK / ArgMax / ArgMin
chooses otherwise while every probe before it is within the precision, the choices are compared member by member
(members at another position, members replaced), with the reference's margin between the swapped members, the
format's rounding step there and the candidate's own error at them. The stage then runs as the candidate once more on
the *reference's* choice (its indices fed in; a TopK's values gathered from the candidate's own scores): where every
probe after the decision is then within the precision, the difference after it is the choice's, not a layer's
rounding, and the root cause is the decision.

A threshold and an NMS are decisions too: a comparison (Greater / Less / GreaterOrEqual / LessOrEqual of float values)
whose booleans come out otherwise, read with each value's distance to its threshold, and a NonMaxSuppression whose
kept boxes differ, read with each box's nearer margin (its score to the score threshold, its IoU with a box of its
class to the IoU threshold) — both run again on the reference's booleans / kept boxes (`choice_members.py`).

The verdict is within precision, the flip said: a choice between near ties that the precision's own rounding moves
apart (the values the decision reads within their budget, everything after it within its budget on the reference's
choice) is what the precision does, as a box the noise model finds at its score threshold is — not a degradation,
never a divergence, never a layer's rounding (keeping layers in FP32 cures an input only by chance; keep-fp32 and fix
say `tie` where the margin lies within a rounding step). Where the candidate chose the same members in another order
and the outputs after the decision are sets (each holds an axis of the k chosen rows: DETR's queries), they are
compared as sets, rows matched by the member each holds, and the reason says so; where a member was replaced, a box
kept or dropped, a comparison came out otherwise, or an output reads the chosen rows in turn, the reason says that
the outputs differ by this choice alone. Not measured: a
candidate other than ONNX Runtime's, a deployed file (SPEC@DIR), a decision with later stages after it, a model past
the screen's sizes (`screen.py`); those keep `flip_why.py`'s reading.
"""

from __future__ import annotations

from dataclasses import dataclass

from cp_debug.backends.spec import Capability
from cp_debug.bisect.findings.choice_members import Members
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare import noise


@dataclass(frozen=True)
class ChoiceFlip:
    """A decision the candidate took otherwise than the reference, every probe before it within the precision and
    every probe after it within the precision on the reference's choice (see the module docstring)."""

    probe: str  # the first probe after the decision: its segment holds it
    node: str
    op: str
    module: str | None
    members: Members  # the candidate's choice against the reference's
    before: float  # the worst error ÷ budget among the probes before the decision
    read: float  # the worst error ÷ budget of the values the decision reads (its scores, boxes)
    after: tuple[str, float]  # on the reference's choice: the probe after it with the worst error ÷ budget, and that
    as_set: tuple[tuple[str, ...], float] | None  # outputs compared as sets (rows matched) and their worst ratio
    precision: str

    @property
    def name(self) -> str:  # subject.Decision's
        return {"threshold": "decision (threshold)", "nms": "decision (non-max suppression)"}.get(
            self.members.kind, "decision (top-k / arg-max)")

    @property
    def changed(self) -> bool:
        return self.members.flipped_rows > 0

    @property
    def set_holds(self) -> bool:
        """The outputs after the decision are sets holding the reference's members, each within the precision."""
        return self.as_set is not None and self.members.replaced == 0 and self.as_set[1] <= 1.0

    def _what(self) -> str:
        where = f"{self.module}: " if self.module else ""
        return f"{where}{self.op} {self.node!r}"

    def _near(self) -> str:
        m = self.members
        steps = m.margin / m.step if m.step > 0 else float("inf")
        return (f"within {self.precision}'s rounding step there ({m.step:.3g})" if steps <= 1 else
                f"{steps:.3g} of {self.precision}'s rounding steps there ({m.step:.3g})")

    def _members(self) -> str:
        m = self.members
        if m.kind == "threshold":
            return (f"{m.replaced} of {m.rows} comparison(s) came out otherwise; their values lie {m.margin:.3g} from "
                    f"the threshold ({m.threshold:.4g}) in the reference, {self._near()}, within the candidate's own "
                    f"error in them ({m.error:.3g})")
        if m.kind == "nms":
            kept = ([f"kept {m.entered} box(es) the reference suppressed"] if m.entered else []) + \
                ([f"dropped {m.replaced} of the reference's {m.chosen}"] if m.replaced else []) or \
                [f"kept {m.reordered} of {m.chosen} box(es) in another order"]
            at = f" (the nearest: its {m.near} against {m.threshold:.4g})" if m.threshold is not None else ""
            return (f"it {' and '.join(kept)}; each lies within {m.margin:.3g} of its threshold in the "
                    f"reference{at}, {self._near()}, within the candidate's own error there ({m.error:.3g})")
        total = m.rows * m.chosen
        parts = ([f"{m.reordered} of {total} member(s) at another position"] if m.reordered else []) + \
            ([f"{m.replaced} of {total} member(s) replaced"] if m.replaced else [])
        return (f"{' and '.join(parts)} in {m.flipped_rows} of {m.rows} row(s); the members it swapped lie "
                f"{m.margin:.3g} apart in the reference, {self._near()}, within the candidate's own error at them "
                f"({m.error:.3g})")

    @property
    def summary(self) -> str:  # subject.Decision's line in the report
        tail = ("the outputs compared as sets" if self.set_holds else
                f"on the reference's choice, every probe after it within {self.precision}'s expected rounding")
        return f"{self._what()}: {self._members()}; {tail}"

    def text(self) -> str:
        after, ratio = self.after
        kind = {"threshold": "threshold flip", "nms": "non-max suppression flip"}.get(self.members.kind,
                                                                                      "decision flip")
        chose = "the candidate chose otherwise, " if self.members.kind == "choice" else ""
        head = (f"{kind} at {self._what()}: {chose}{self._members()}, the values it reads and every probe "
                f"before it within {self.precision}'s expected rounding (worst {max(self.read, self.before):.2g}×): "
                f"a near tie the format cannot keep. On the reference's choice every probe after it is within it "
                f"(worst {after}, "
                f"{ratio:.2g}×): the difference after it is the choice, not a layer's rounding — keeping layers in "
                "FP32 does not cure it")
        if self.set_holds:
            names, worst = self.as_set
            return (f"{head}; compared as sets (rows matched by the member each holds), {', '.join(names)} are "
                    f"within {self.precision}'s expected rounding ({worst:.2g}×)")
        if self.members.kind != "choice":
            return f"{head}; widen the margin to the threshold, or judge the outputs as sets"
        if self.members.replaced:
            return f"{head}; the outputs after it hold another member: widen the margin, or judge the outputs as sets"
        return (f"{head}; the outputs after it read the chosen members in turn: compare them as a set, or widen "
                "the margin")

    def verdict(self) -> tuple[noise.Outcome, str]:
        """Within precision: the choice flipped between near ties that the precision's own rounding moves apart (the
        values the decision reads within their budget, everything after it within its budget on the reference's
        choice), as a box the noise model finds at its threshold is the precision's. Said: where the outputs are
        sets holding the reference's members, compared as sets; else that they differ by this choice alone."""
        m = self.members
        if self.set_holds:
            names, worst = self.as_set
            return noise.Outcome.WITHIN_PRECISION, (
                f"a decision flip at {self._what()}, the same members in another order ({m.reordered} of "
                f"{m.rows * m.chosen}, margin {m.margin:.3g}); the outputs compared as sets are within "
                f"{self.precision}'s expected rounding ({', '.join(names)}: ≤ {worst:.2g}×)")
        what = {"threshold": f"{m.replaced} comparison(s) came out otherwise",
                "nms": f"{m.entered} box(es) kept that the reference suppressed, {m.replaced} of its dropped"}.get(
                    m.kind) or (
            f"{m.replaced} member(s) replaced" if m.replaced else
            f"{m.reordered} member(s) in another order, which the outputs read in turn")
        return noise.Outcome.WITHIN_PRECISION, (
            f"the outputs differ by a decision flip alone, at {self._what()}: {what} between near ties (margin "
            f"{m.margin:.3g}, within the candidate's own error there, {m.error:.3g}, the values it reads within "
            f"{self.precision}'s expected rounding: {self.read:.2g}×); on the reference's choice every probe after "
            f"it is within it (worst {self.after[1]:.2g}×) — what {self.precision} does at a near tie, no layer's "
            "rounding")

    def to_json(self) -> dict:
        m = self.members
        return {"name": self.name, "kind": "decision_flip", "decision": m.kind, "changed": self.changed,
                "summary": self.summary, "node": self.node, "op": self.op, "module": self.module,
                "probe": self.probe, "k": m.chosen, "rows": m.rows, "flipped_rows": m.flipped_rows,
                "reordered": m.reordered, "replaced": m.replaced, "entered": m.entered, "margin": m.margin,
                "step": m.step, "error": m.error, "threshold": m.threshold,
                "after": {"probe": self.after[0], "noise_ratio": self.after[1]},
                "as_set": {"outputs": list(self.as_set[0]), "noise_ratio": self.as_set[1]} if self.as_set else None}


def choice_flip(run: RunState, state: CandidateState, fd: str | None) -> ChoiceFlip | None:
    """The measured decision flip in the first divergent probe's stage (see the module docstring), or None."""
    from cp_debug.bisect.findings.choice_runs import DECIDING, choice_runs, downstream
    from cp_debug.bisect.stages.fits import subject_weights
    from cp_debug.bisect.stages.screen import CUDA_SCREEN_UP_TO, SCREEN_UP_TO

    spec = state.spec
    prec = state.judged_at or spec.precision
    if fd is None or fd not in run.probes or prec not in ("fp16", "bf16") or not spec.can(Capability.ORT_SESSIONS) \
            or spec.onnx_dir is not None or state.refused is not None:
        return None
    i = run.probes[fd].stage
    if any(run.probes[n].stage > i for n in state.results if n in run.probes):
        return None  # later stages ran on the candidate's own choice: not measured here
    st = run.stage_of(state.label, i)
    graph = st.onnx().graph
    decisions = [n for n in graph.node if n.op_type in DECIDING]
    if not decisions or not _before_ok(run, state, i, downstream(graph, [t for n in decisions for t in n.output if t])):
        return None  # no decision, or the values reaching every decision are off already: the flip would follow
    if subject_weights(run.subject)[0] > (SCREEN_UP_TO if spec.device == "cpu" else CUDA_SCREEN_UP_TO):
        run.warnings.append(f"{state.label}: the decisions of {fd}'s stage were not compared (three more runs of "
                            "the stage, past the screen's size for this device)")
        return None
    found = choice_runs(run, state, i)
    if found is None:
        return None
    before, after = _split(run, state, i, found.after_tensors)
    if not after or not _before_ok(run, state, i, found.after_tensors):
        return None  # the values reaching the decision are off already: the flip follows, it does not lead
    if found.read > 1.0:
        return None  # the values the decision reads are off beyond the precision: the flip follows, it does not lead
    locked = found.locked_ratios(run, state, after)
    if locked is None or max(locked.values()) > 1.0:
        return None  # on the reference's choice something after it is still off: not the choice alone
    first = min(after, key=lambda n: (run.probes[n].pos, n))
    worst_after = max(locked, key=locked.get)
    worst_before = max((state.results[n].judgement.noise_ratio for n in before
                        if state.results[n].judgement is not None), default=0.0)
    from cp_debug.bisect.findings.op_findings import NamedStage, named_module

    node = found.node
    return ChoiceFlip(first, node.name, node.op_type, named_module(node, NamedStage.of(st)), found.members,
                      worst_before, found.read, (worst_after, locked[worst_after]), found.as_sets(run, state),
                      prec)


def _before_ok(run: RunState, state: CandidateState, i: int, after_tensors: set[str]) -> bool:
    """Every measured probe before the decision (not computed from it) within the precision."""
    return all(state.results[n].status in ("ok", "missing") for n in _split(run, state, i, after_tensors)[0])


def _split(run: RunState, state: CandidateState, i: int, after_tensors: set[str]) -> tuple[list[str], list[str]]:
    """The candidate's measured probes of stage i (and before it) whose tensor does not depend on the decision, and
    those of stage i whose tensor does."""
    pm = run.stage_of(state.label, i).probe_map()
    before, after = [], []
    for name in state.results:
        p = run.probes.get(name)
        if p is None:
            continue
        tensor = name if p.kind in ("input", "output") else (pm.tensors.get(name) if pm is not None else None)
        if p.stage == i and tensor in after_tensors:
            after.append(name)
        elif p.stage < i or tensor is not None:
            before.append(name)
    return before, after


def known_flip(run: RunState, state: CandidateState, fd: str | None, rc: str):
    """Where no choice was measured: a near tie in the first divergent probe's segment (`flip_why.py`), else a value
    rounded across an integer (`index_why.py`); where the index check cannot be worked out, a warning and None."""
    from cp_debug.bisect.findings.flip_why import decision_flip
    from cp_debug.bisect.findings.index_why import index_flip

    for probe in dict.fromkeys(p for p in (fd, rc) if p):  # rounding that flowed in; the root cause's own
        flip = decision_flip(run, state, probe)
        if flip is not None:
            return flip
    try:
        return index_flip(run, state, fd, rc)
    except Exception as err:  # noqa: BLE001 - the finding is extra; the run's verdict stands without it
        run.warnings.append(f"{state.label}: the index check of {fd} was not worked out: {err}")
        return None

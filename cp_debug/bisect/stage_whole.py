"""Whole-stage execution: a backend runs one stage end to end with the probes exposed.

Used where a torch or TensorRT side takes part (else the stage runs in lockstep, `stage_lockstep.py`): the
reference runs first (twice, for the noise floor) and its probe values go to the store; each candidate then
runs the stage on its own upstream outputs, each probe compared as it comes, and its local errors are measured
by `local_error.py`.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.local_error import local_errors
from cp_debug.bisect.record import amplification, judged, keep_plot, merge_precision
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState, unmapped_note
from cp_debug.bisect.subject import Stage
from cp_debug.compare.diff import TensorDiff


def make_stage_runner(run: RunState, spec: BackendSpec, stage: Stage, probes: list[ProbeSpec], *,
                      capture_inputs=False, calib=None, onnx_model=None, extra_tensors=None):
    """A runner for `spec` over `stage` with `probes` exposed (module outputs for torch, tensors for ONNX)."""
    from cp_debug.backends import make_runner

    mods = [p.name for p in probes if p.kind == "module"]
    if spec.framework == "torch":
        return make_runner(spec, torch_module=stage.module, input_names=stage.input_names,
                           output_names=stage.output_names, probe_modules=mods,
                           capture_inputs=capture_inputs, determinism=run.det)
    model = onnx_model if onnx_model is not None else stage.onnx()
    if extra_tensors is None:
        pm = stage.probe_map()
        extra_tensors = [pm.tensors[m] for m in mods if pm is not None and m in pm.tensors]
    kwargs = dict(extra_outputs=list(dict.fromkeys(extra_tensors)), determinism=run.det, spinning=False,
                  **run.ort_kwargs(spec, model))
    qdq = stage.qdq_onnx() if spec.framework == "ort" and spec.precision == "int8" and onnx_model is None else None
    if qdq is not None:
        kwargs["int8_model"] = qdq  # --int8: the deployed Q/DQ graph, not ORT's own quantization
    elif spec.precision == "int8":
        kwargs["calib_feeds"] = calib
    return make_runner(spec, onnx_model=model, **kwargs)


def probe_values(stage: Stage, spec: BackendSpec, outputs: dict, probes: list[ProbeSpec],
                 feed: dict) -> dict[str, np.ndarray]:
    """Pick each probe's value out of a runner's outputs (torch keys by module, ONNX by tensor)."""
    vals = {}
    pm = stage.probe_map() if spec.framework != "torch" else None
    for p in probes:
        if p.kind == "input":
            vals[p.name] = feed[p.name]
        elif p.kind == "output":
            vals[p.name] = outputs[p.name]
        elif spec.framework == "torch":
            if p.name in outputs:
                vals[p.name] = outputs[p.name]
        elif pm is not None and p.name in pm.tensors and pm.tensors[p.name] in outputs:
            vals[p.name] = outputs[pm.tensors[p.name]]  # absent: the candidate's graph lost it (reported missing)
    return vals


def reference_stage(run: RunState, i: int, sp: list[ProbeSpec], *, noise: bool, capture: bool) -> dict:
    """Run the reference over stage i with `sp` exposed and keep their values (torch: inputs too)."""
    st = run.subject.stages[i]
    feed = run.ref_feeds[i]
    with run.progress.step(f"reference {run.ref_label}: {st.name}"):
        runner = make_stage_runner(run, run.ref_spec, st, sp, capture_inputs=capture, calib=run.calib(i))
        with runner:
            out = runner.infer(feed)
            again = runner.infer(feed) if noise else None
    vals = probe_values(st, run.ref_spec, out, sp, feed)
    for name, v in vals.items():
        run.store.put(name, v)
    if capture:
        for key, v in out.items():
            if ":in" in key:
                run.store.put(key, v)
    if again is not None:
        vals2 = probe_values(st, run.ref_spec, again, sp, feed)
        for name, v in vals.items():
            if name in vals2:
                run.noise[name] = TensorDiff.from_arrays(name, v, vals2[name])
    run.execution.setdefault(st.name, "whole stage, probes exposed")
    return {k: out[k] for k in st.output_names}


def candidate_stage(run: RunState, state: CandidateState, i: int, sp: list[ProbeSpec], feed: dict) -> dict:
    """Run one candidate over stage i on `feed`, compare each probe with the store, measure local errors."""
    st = run.subject.stages[i]
    spec = state.spec
    with run.progress.step(f"{state.label}: {st.name} ({len(sp)} probes)"):
        runner = make_stage_runner(run, spec, st, sp, calib=run.calib(i))
        with runner:
            out = runner.infer(feed)
            rep = runner.precision_report()
            if rep is not None:
                merge_precision(state, st.name, rep)
            state.settings.setdefault(st.name, runner.settings())
            if getattr(runner, "int8_model", None) is not None:
                note, done = f"{state.label} runs the --int8 Q/DQ graph whole (no lockstep)", run.execution.get(st.name, "")
                run.execution[st.name] = done if note in done else f"{done or 'whole stage, probes exposed'}; {note}"
            if hasattr(runner, "quant_amax"):
                with contextlib.suppress(Exception):
                    state.int8_amax.update(runner.quant_amax() or {})
            vals = probe_values(st, spec, out, sp, feed)
            stage_out = {k: out[k] for k in st.output_names}
            del out
            diffs = {}
            for p in sp:
                if p.name not in run.store:
                    continue
                if p.name not in vals:
                    gone = getattr(runner, "missing_outputs", ())  # ONNX runners: tensors their graph lacks
                    lost = bool(gone) and (p.name in gone or st.probe_map().tensors.get(p.name) in gone)
                    note = "its tensor is not in the candidate's graph (e.g. the --int8 Q/DQ graph)" if lost else None
                    state.results[p.name] = ProbeResult(p.name, "missing", note=note or unmapped_note(st, p.name, spec))
                    continue
                ref = run.store.get(p.name)
                d = TensorDiff.from_arrays(p.name, ref, vals[p.name], run.tolerance(state, p.name))
                diffs[p.name] = d
                keep_plot(state, p.name, ref, vals[p.name])
                vals.pop(p.name)
            local = local_errors(run, state, i, sp, runner) if run.opts.local else {}
    pm = st.probe_map() if spec.framework != "torch" else None
    exposed = tuple(pm.tensors[p.name] for p in sp if p.kind == "module" and p.name in pm.tensors) if pm else ()
    for p in sp:
        if p.name in diffs:
            run.exposed[p.name] = exposed
            loc, _ = local.get(p.name, (None, ()))
            state.results[p.name] = judged(run, state, p.name, diffs[p.name], loc)
    for name, (_, upstream) in local.items():
        if name in state.results:
            state.results[name] = replace(state.results[name],
                                          amplification=amplification(state, name, upstream))
    return stage_out

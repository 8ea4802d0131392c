"""Whole-stage execution: a backend runs one stage end to end with the probes exposed.

Used where a torch or TensorRT side takes part, and where an ONNX Runtime reference and candidate share a device
whose store tier holds the probes (`device_whole`); else the stage runs in lockstep, `stage_lockstep.py`. The
reference runs first (twice, for the noise floor) and its probe values go to the store; each candidate then
runs the stage on its own upstream outputs, each probe compared as it comes, and its local errors are measured
by `local_error.py`.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.bisect.local_error import local_errors
from cp_debug.bisect.record import amplification, judged, keep_plot, keep_plot_device, merge_precision
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState, unmapped_note
from cp_debug.bisect.subject import Stage
from cp_debug.compare.diff import TensorDiff

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.ahead import Ahead

# An ONNX candidate's probe values held at once, at most (one run per chunk beyond it). Not tied to
# --memory-budget: which tensors a run exposes changes what ORT fuses and rounds, so a report must not depend on
# the budget (a `--memory-budget 0` run gives the default run's numbers).
CHUNK_BYTES = 1 << 30


def make_stage_runner(run: RunState, spec: BackendSpec, stage: Stage, probes: list[ProbeSpec], *,
                      capture_inputs=False, calib=None, onnx_model=None, extra_tensors=None):
    """A runner for `spec` over `stage` with `probes` exposed (module outputs for torch, tensors for ONNX)."""
    from cp_debug.backends.factory import make_runner

    mods = [p.name for p in probes if p.kind == "module"]
    if spec.is_torch:
        return make_runner(spec, torch_module=stage.module, input_names=stage.input_names,
                           output_names=stage.output_names, probe_modules=mods,
                           capture_inputs=capture_inputs, determinism=run.det)
    model = onnx_model if onnx_model is not None else stage.onnx()
    if extra_tensors is None:
        pm = stage.probe_map()
        extra_tensors = [pm.tensors[m] for m in mods if pm is not None and m in pm.tensors]
    kwargs = dict(extra_outputs=list(dict.fromkeys(extra_tensors)), determinism=run.det, spinning=False,
                  shared_arena=True, **run.ort_kwargs(spec, model))
    takes_qdq = spec.precision == "int8" and spec.can(Capability.QDQ_MODEL) and onnx_model is None
    qdq = stage.qdq_onnx() if takes_qdq else None
    if qdq is not None:
        kwargs["int8_model"] = qdq  # --int8: the deployed Q/DQ graph, not ORT's own quantization
    elif spec.precision == "int8":
        kwargs["calib_feeds"] = calib
    if onnx_model is None and spec.onnx_dir is not None:  # trt@DIR: the user's engine beside the stage's ONNX
        from cp_debug.backends.trt_plan import prebuilt_engine

        kwargs["engine_file"] = prebuilt_engine(spec.onnx_dir, stage.name)  # a runner that builds none ignores it
    return make_runner(spec, onnx_model=model, **kwargs)


def probe_values(stage: Stage, spec: BackendSpec, outputs: dict, probes: list[ProbeSpec],
                 feed: dict) -> dict[str, np.ndarray]:
    """Pick each probe's value out of a runner's outputs (torch keys by module, ONNX by tensor)."""
    vals = {}
    pm = stage.probe_map() if spec.runs_onnx else None
    for p in probes:
        if p.kind == "input":
            vals[p.name] = feed[p.name]
        elif p.kind == "output":
            vals[p.name] = outputs[p.name]
        elif spec.is_torch:
            if p.name in outputs:
                vals[p.name] = outputs[p.name]
        elif pm is not None and p.name in pm.tensors and pm.tensors[p.name] in outputs:
            vals[p.name] = outputs[pm.tensors[p.name]]  # absent: the candidate's graph lost it (reported missing)
    return vals


def reference_stage(run: RunState, i: int, sp: list[ProbeSpec], *, noise: bool, capture: bool,
                    ran: Callable[[], None] | None = None) -> dict:
    """Run the reference over stage i with `sp` exposed and keep their values (torch: inputs too). `ran` is called
    once the first run's values are in the store (before the noise run): candidates run ahead from there (`ahead.py`).

    A torch reference streams its probe values into the store as its hooks produce them, and its noise-floor
    run compares each with the store as it comes: the stage's probes are never all in memory at once (awml-base
    at `--level all`: 8.7 GB of probe tensors a run). Other references hold one run's outputs at a time."""
    st = run.subject.stages[i]
    feed = run.ref_feeds[i]
    modules = {p.name for p in sp if p.kind == "module"}
    streaming = run.ref_spec.can(Capability.STREAM_PROBES)
    with run.progress.step(f"reference {run.ref_label}: {st.name}"):
        runner = make_stage_runner(run, run.ref_spec, st, sp, capture_inputs=capture, calib=run.calib(i))
        twins = None
        on_device = (streaming or binds_on_device(run.ref_spec)) and _device_tier(run)
        bound = on_device and not streaming  # ONNX Runtime read through IO binding
        if streaming:
            def keep(key: str, arr: np.ndarray) -> None:  # `arr` is lent for the call (TorchRunner.on_probe)
                if key in modules or (capture and ":in" in key):
                    run.store.put(key, arr, borrowed=True)
            runner.on_probe = keep
        if on_device:  # the store's device tier first: `keep` gets what does not fit
            def keep_on_device(key: str, t) -> bool:
                if key in modules or (capture and ":in" in key):
                    return run.store.put_device(key, t)
                return True  # not a probe of this run: nothing to copy out
            runner.on_device_probe = keep_on_device
        with runner:
            if streaming and noise and run.ref_spec.device == "cuda" and not on_device:  # checked on the device first
                from cp_debug.bisect.device_twins import DeviceTwins

                twins = DeviceTwins(modules)  # once the runner is active: its module already on the device
                runner.on_device_probe = twins.keep
            out = runner.infer_device(device_feed(feed, run.store.device)) if bound else runner.infer(feed)
            for name, v in probe_values(st, run.ref_spec, out, sp, feed).items():
                if not (on_device and run.store.put_device(name, _on(v, run.store.device))):
                    run.store.put(name, _host(v))
            if capture and not streaming:
                for key, v in out.items():
                    if ":in" in key:
                        run.store.put(key, v)
            stage_out = {k: _host(out[k]) for k in st.output_names}
            del out
            if ran is not None:
                ran()
            if noise:
                _noise_run(run, runner, st, sp, feed, twins, streaming=streaming, on_device=on_device, bound=bound)
    run.execution.setdefault(st.name, "whole stage, probes exposed")
    return stage_out


def _noise_run(run: RunState, runner, st, sp: list[ProbeSpec], feed: dict, twins, *, streaming: bool,
               on_device: bool = False, bound: bool = False) -> None:
    """The reference's second run on the same feed (its runner active): each probe compared with the store, the
    differences are its noise floor (`run.noise`); `twins` compares on the device first where there are some, and
    so does the store's device tier (`on_device`): bit for bit first, else `device_diff.diff_tensors`. A `bound`
    reference (ONNX Runtime through IO binding) runs on the device and its values are compared there too."""
    from cp_debug.compare.device_diff import diff_tensors, identical_diff

    names = {p.name for p in sp}

    def against_store(name: str, v) -> None:
        if name in run.store and name in names and not (on_device and against_device(name, v)):
            run.noise[name] = TensorDiff.from_arrays(name, run.store.get(name), _host(v))

    def against_device(name: str, t) -> bool:
        if name not in names:
            return True  # a captured input: the first run's value stands
        kept = run.store.device_value(name)
        if kept is None:
            return False  # kept on the host: compared there
        t = _on(t, kept.device)  # a stage output or input: a host array, copied in
        run.noise[name] = identical_diff(name, kept, t) or diff_tensors(name, kept, t, one_pass=True)
        return True
    if streaming:
        runner.on_probe = against_store
    if twins is not None:
        runner.on_device_probe = twins.same
    elif on_device:
        runner.on_device_probe = against_device
    again = runner.infer_device(device_feed(feed, run.store.device)) if bound else runner.infer(feed)
    for name, v in probe_values(st, run.ref_spec, again, sp, feed).items():
        against_store(name, v)
    del again
    if twins is not None:  # bit-identical on the device: no error, nothing to copy out or compare
        run.noise.update(twins.identical)
        twins.clear()


def candidate_stage(run: RunState, state: CandidateState, i: int, sp: list[ProbeSpec], feed: dict,
                    ahead: "Ahead | None" = None) -> dict:
    """Run one candidate over stage i on `feed`, compare each probe with the store, measure local errors. With
    `ahead` holding this candidate, its run and local errors were made on helper threads (`ahead.py`): taken here.

    A torch candidate's probes are compared as its hooks produce them. An ONNX candidate whose probe tensors would
    not fit `CHUNK_BYTES` together runs the stage once per chunk of probes that does: more inferences, bounded host
    memory. Each run exposes only its chunk, except on CUDA where every probe tensor fits in half the free device
    memory: there one session exposes them all and each run copies one chunk to the host (`_fits_on_device`). A SPEC@DIR
    candidate runs its deployed file, its probes mapped onto that file's tensors (`deployed.py`)."""
    st = run.stage_of(state.label, i)
    spec = state.spec
    made = ahead.take(state.label) if ahead is not None else None
    if made is not None and made.out is None:  # did not fit the device: the serial path below
        made = None
    # read through infer_device, compared where the store keeps them
    device = made is not None or compares_on_device(run, spec, sp)
    chunks = [sp] if device else probe_chunks(run, spec, sp)
    one_session = len(chunks) > 1 and _fits_on_device(run, spec, sp)
    runs = f", {len(chunks)} runs" if len(chunks) > 1 else ""
    diffs: dict[str, TensorDiff] = {}
    exposed: dict[str, tuple[str, ...]] = {}  # probe -> the tensors exposed in the run that measured it
    stage_out: dict | None = None
    local: dict = {}
    with run.progress.step(f"{state.label}: {st.name} ({len(sp)} probes{runs})"), contextlib.ExitStack() as keep:
        # a CUDA candidate whose probe tensors all fit in device memory: one session exposes them all and each run
        # copies one chunk out (not a session, and an FP16 conversion of the stage, per chunk)
        whole = keep.enter_context(make_stage_runner(run, spec, st, sp, calib=run.calib(i))) if one_session else None
        if made is not None:  # active since the helper made it: deactivated with the others
            keep.callback(made.runner.__exit__, None, None, None)
        for k, chunk in enumerate(chunks):
            if made is not None:
                runner = made.runner
            else:
                runner = whole or make_stage_runner(run, spec, st, chunk, calib=run.calib(i))
            if runner.can(Capability.STREAM_PROBES):  # compared as the hooks produce them: never all in memory
                runner.on_probe = _streamed_compare(run, state, {p.name for p in chunk}, diffs)
                if run.store.device is not None and spec.device == run.store.device.type:
                    runner.on_device_probe = _device_compare(run, state, {p.name for p in chunk}, diffs)
            with contextlib.nullcontext(runner) if whole or made else runner:
                if made is not None:
                    out, made.out = made.out, None
                elif device:
                    out = runner.infer_device(device_feed(feed, run.store.device))
                else:
                    out = runner.infer_some(feed, _exposed(st, spec, chunk)) if whole else runner.infer(feed)
                if k == 0:
                    _describe(run, state, st, runner)
                    if made is not None:  # for the report: its run and local errors went beside the reference's
                        state.settings[st.name]["ran_beside_reference"] = True
                vals = probe_values(st, spec, out, chunk, feed)
                if stage_out is None:
                    stage_out = {n: _host(out[n]) for n in st.output_names}
                del out
                _compare(run, state, st, chunk, vals, runner, diffs)
                del vals
                exposed.update({p.name: _exposed(st, spec, sp if whole else chunk) for p in chunk})
                if k == len(chunks) - 1 and run.opts.local:
                    found = ahead.local(state.label) if ahead is not None else None
                    if found is not None:  # measured on a helper thread while the engine's compared
                        local = found.apply(run, state, i)
                    else:
                        local = local_errors(run, state, i, sp, runner)
    _record(run, state, sp, diffs, exposed, local)
    return stage_out


def _record(run: RunState, state: CandidateState, sp: list[ProbeSpec], diffs: dict, exposed: dict,
            local: dict) -> None:
    """Each compared probe's result, judged with its local error, into the state; then its amplification."""
    for p in sp:
        if p.name in diffs:
            run.exposed[p.name] = exposed[p.name]
            loc, _ = local.get(p.name, (None, ()))
            state.results[p.name] = judged(run, state, p.name, diffs[p.name], loc)
    for name, (_, upstream) in local.items():
        if name in state.results:
            state.results[name] = replace(state.results[name],
                                          amplification=amplification(state, name, upstream))


def probe_chunks(run: RunState, spec: BackendSpec, sp: list[ProbeSpec]) -> list[list[ProbeSpec]]:
    """`sp` in consecutive chunks whose reference values fit `CHUNK_BYTES` (ONNX candidates). A torch candidate
    runs them all in one pass (streamed), and so does an INT8 one (ORT calibrates on what the run exposes)."""
    if spec.can(Capability.STREAM_PROBES) or spec.precision == "int8":
        return [sp]
    budget = CHUNK_BYTES
    size = {p.name: (run.store.nbytes(p.name) if p.name in run.store else 0) for p in sp}
    if sum(size.values()) <= budget:
        return [sp]
    chunks: list[list[ProbeSpec]] = []
    used = 0
    for p in sp:
        if chunks and used + size[p.name] <= budget:
            chunks[-1].append(p)
            used += size[p.name]
        else:
            chunks.append([p])
            used = size[p.name]
    return chunks


def _fits_on_device(run: RunState, spec: BackendSpec, sp: list[ProbeSpec]) -> bool:
    """An ONNX Runtime CUDA candidate whose probe tensors (the reference's sizes) take at most half the GPU's free
    memory: then they are exposed in one session (`candidate_stage`). Measured through torch's CUDA runtime; False
    where it cannot tell."""
    if not spec.can(Capability.INFER_SOME) or spec.device != "cuda" or spec.precision == "int8":
        return False
    free = _free_gpu_memory()  # None: no CUDA runtime to ask, keep one session per chunk
    return free is not None and _probe_bytes(run, sp) <= free // 2


def _free_gpu_memory() -> int | None:
    """Free bytes on the current CUDA device, through torch's CUDA runtime; None where it cannot tell."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info()
    except Exception:  # noqa: BLE001 - no CUDA runtime to ask
        return None
    return int(free)


def _probe_bytes(run: RunState, sp: list[ProbeSpec]) -> int:
    return sum(run.store.nbytes(p.name) for p in sp if p.name in run.store)


def _device_tier(run: RunState) -> bool:
    """Whether the reference's probes go to the store's device tier, enabling it on first use: a reference that
    hands torch tensors over (`DEVICE_TENSORS`) on CUDA, `DEVICE_SHARE` of the free GPU memory for it;
    `BisectOptions.device_budget_mb` sets the budget (0: off; on a CPU reference: torch CPU tensors, as the
    tests run the device path)."""
    store = run.store
    if store.device is not None:
        return True
    budget = device_budget(run)
    if budget is None:
        return False
    import torch

    store.enable_device(torch.device(_tier_type(run)), budget)
    return True


def tier_device(run: RunState) -> str | None:
    """The device type ("cuda" or "cpu") the reference's probes lie on, or will once it runs (the store's device
    tier: a reference that streams its probes or is read through IO binding, with a device budget); None where they
    stay on the host. Enables nothing (`_device_tier` does)."""
    ref = run.ref_spec
    if not (ref.can(Capability.STREAM_PROBES) or binds_on_device(ref)):
        return None
    if run.store.device is not None:
        return run.store.device.type
    return None if device_budget(run) is None else _tier_type(run)


def _tier_type(run: RunState) -> str:
    """The device type of the tier `_device_tier` enables: the reference's CUDA device, else torch CPU tensors."""
    return "cuda" if run.ref_spec.device == "cuda" else "cpu"


def device_budget(run: RunState) -> int | None:
    """The bytes the store's device tier would get (`_device_tier`), None where it stays off."""
    from cp_debug.bisect.store import DEVICE_SHARE

    mb = run.opts.device_budget_mb
    ref = run.ref_spec
    if mb == 0 or not ref.can(Capability.DEVICE_TENSORS) or (mb is None and ref.device != "cuda"):
        return None
    if mb is not None:
        return mb << 20
    free = _free_gpu_memory()
    return None if free is None else int(free * DEVICE_SHARE)  # None: no CUDA runtime to ask, the host store


def binds_on_device(spec: BackendSpec) -> bool:
    """An ONNX Runtime reference that can be read through IO binding: its probes straight into the device tier."""
    return spec.can(Capability.INFER_SOME) and spec.can(Capability.DEVICE_TENSORS) and spec.precision != "int8"


def device_whole(run: RunState, spec: BackendSpec) -> bool:
    """Whether candidate `spec` runs whole stages against the reference's probes in the store's device tier rather
    than in lockstep: an ONNX Runtime reference and candidate on one CUDA device (not INT8, whose calibration reads
    host feeds), with a device tier to hold the probes (`--device-budget 0` keeps the lockstep). There the reference
    runs each stage once (twice with the noise floor), the candidate once, every probe compared where it lies, and
    only the local errors cut segments — where the lockstep ran a session per segment for each side and compared on
    the host (on the H100, awml-base `--level all`: 14.9 s for the ORT pair against 7.8 s for the torch one).
    Not on the CPU: there the lockstep is the faster, and an FP16 lane's values cross its cuts in float16, which a
    whole graph on ONNX Runtime's CPU provider does not do (it drops the Cast pairs around float32-only kernels);
    on CUDA the provider keeps them, so whole stage and lockstep hold the same float16 values."""
    ref = run.ref_spec
    if not (binds_on_device(ref) and binds_on_device(spec)) or not (ref.device == spec.device == "cuda"):
        return False  # (`binds_on_device` leaves INT8 out)
    if spec.onnx_dir is not None:
        return False
    return run.store.device is not None or device_budget(run) is not None


def compares_on_device(run: RunState, spec: BackendSpec, sp: list[ProbeSpec]) -> bool:
    """An ONNX Runtime candidate on the device of the store's device tier, which holds some of this stage's
    probes: it runs once through `infer_device` with every probe exposed, its outputs left on the device, when
    they fit half the free GPU memory (the reference's sizes). Not INT8 (calibration reads host feeds)."""
    store = run.store
    if store.device is None or spec.device != store.device.type or spec.precision == "int8":
        return False
    if not spec.can(Capability.DEVICE_TENSORS) or not spec.can(Capability.INFER_SOME):
        return False
    if not any(store.device_value(p.name) is not None for p in sp):
        return False
    if spec.device != "cuda":
        return True
    free = _free_gpu_memory()
    return free is not None and _probe_bytes(run, sp) <= free // 2


def device_feed(feed: dict, device) -> dict:
    """A stage's numpy feed as torch tensors on `device` (one copy in)."""
    return {k: _on(v, device) for k, v in feed.items()}


def _on(value, device):
    """`value` as a torch tensor on `device` (a numpy array copied there; a tensor moved where it lies elsewhere)."""
    import torch

    from cp_debug.compare.device_diff import is_tensor

    if not is_tensor(value):
        value = torch.from_numpy(np.ascontiguousarray(value))
    return value.to(device)


def _host(value):
    """A stage output as the next stage's glue takes it: numpy (a device tensor copied out)."""
    from cp_debug.compare.device_diff import host_array, is_tensor

    return host_array(value) if is_tensor(value) else value


def _exposed(st: Stage, spec: BackendSpec, chunk: list[ProbeSpec]) -> tuple[str, ...]:
    pm = st.probe_map() if spec.runs_onnx else None
    return tuple(pm.tensors[p.name] for p in chunk if p.kind == "module" and p.name in pm.tensors) if pm else ()


def _describe(run: RunState, state: CandidateState, st: Stage, runner) -> None:
    """Precision, settings, INT8 facts of a candidate's stage runner, into its state."""
    rep = runner.precision_report()
    if rep is not None:
        merge_precision(state, st.name, rep)
    state.settings.setdefault(st.name, runner.settings())
    if runner.can(Capability.QDQ_MODEL) and runner.int8_model is not None:
        note, done = f"{state.label} runs the --int8 Q/DQ graph whole (no lockstep)", run.execution.get(st.name, "")
        run.execution[st.name] = done if note in done else f"{done or 'whole stage, probes exposed'}; {note}"
    with contextlib.suppress(Exception):
        state.int8_amax.update(runner.quant_amax() or {})


def _streamed_compare(run: RunState, state: CandidateState, names: set[str], diffs: dict):
    def on_probe(key: str, arr: np.ndarray) -> None:
        if key in names and key in run.store:
            _compare_one(run, state, key, arr, diffs)
    return on_probe


def _compare(run: RunState, state: CandidateState, st: Stage, chunk: list[ProbeSpec], vals: dict, runner,
             diffs: dict) -> None:
    """Each probe of `chunk` against the store (missing ones recorded as such); values popped as compared."""
    spec = state.spec
    for p in chunk:
        if p.name in diffs:  # streamed from a torch runner's hooks
            continue
        if p.name not in run.store:  # the reference has no value: an ONNX reference whose graph lacks the tensor
            if p.kind != "input" and p.name not in state.results:  # (a BN the exporter folded, say): as lockstep
                state.results[p.name] = ProbeResult(p.name, "missing", note=unmapped_note(st, p.name, spec))
            continue
        if p.name not in vals:
            why = runner.unobserved().get(st.probe_map().tensors.get(p.name, p.name))
            if why is not None:  # e.g. a tensor TensorRT fused away (a kit's results): listed, never silently missing
                state.results[p.name] = ProbeResult(p.name, "missing", note=why)
                continue
            gone = runner.missing_outputs  # tensors its graph lacks after the precision transform
            lost = bool(gone) and (p.name in gone or st.probe_map().tensors.get(p.name) in gone)
            note = "its tensor is not in the candidate's graph (e.g. the --int8 Q/DQ graph)" if lost else None
            state.results[p.name] = ProbeResult(p.name, "missing", note=note or unmapped_note(st, p.name, spec))
            continue
        _compare_one(run, state, p.name, vals.pop(p.name), diffs)


def _device_compare(run: RunState, state: CandidateState, names: set[str], diffs: dict):
    """A torch candidate's probe tensor compared where it lies when the store's device tier holds its reference
    (True: done); else False, and it reaches `_streamed_compare` on the host."""
    def on_device_probe(key: str, t) -> bool:
        if key not in names or run.store.device_value(key) is None:
            return False
        _compare_one(run, state, key, t, diffs)
        return True
    return on_device_probe


def _compare_one(run: RunState, state: CandidateState, name: str, value, diffs: dict) -> None:
    """One probe's value against the store: its diff into `diffs`, its plot arrays into the state. A torch
    tensor against a reference in the store's device tier is compared there; any other pair on the host."""
    from cp_debug.compare.device_diff import diff_tensors, host_array, is_tensor

    kept = run.store.device_value(name)
    if kept is not None:  # a host value (a stage input) is copied in: the host never reads the reference back
        value = _on(value, kept.device)
        diffs[name] = diff_tensors(name, kept, value, run.tolerance(state, name), one_pass=True)
        keep_plot_device(state, name, kept, value)
        return
    if is_tensor(value):
        value = host_array(value)
    ref = run.store.get(name)
    diffs[name] = TensorDiff.from_arrays(name, ref, value, run.tolerance(state, name))
    keep_plot(state, name, ref, value)

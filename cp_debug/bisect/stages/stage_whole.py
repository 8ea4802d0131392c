"""Whole-stage execution: a backend runs one stage end to end with the probes exposed.

Used where a torch or TensorRT side takes part, and where an ONNX Runtime reference and candidate share a device
whose store tier holds the probes (`placement.device_whole`); else the stage runs in lockstep, `stage_lockstep.py`. The
reference runs first (twice, for the noise floor) and its probe values go to the store; each candidate then
runs the stage on its own upstream outputs, each probe compared as it comes, and its local errors are measured
by `local_error.py`.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Callable

import numpy as np

from cp_debug.backends.spec import BackendSpec, Capability
from cp_debug.bisect.stages.qdq_segments import note_int8_graph
from cp_debug.bisect.stages.ahead import Ahead
from cp_debug.bisect.stages.lent import lent_outputs, take_lent
from cp_debug.bisect.stages.local_error import local_errors, switch_tensors
from cp_debug.bisect.stages.placement import (binds_on_device, compares_on_device, device_feed, free_gpu_memory,
    probe_bytes,
                                       to_device, to_host, use_device_tier)
from cp_debug.bisect.stages.record import (amplification, carried_deployed, carry, is_mask_probe, judged, keep_plot,
                                   keep_plots_device, mask_saturation, merge_precision, note_massive)
from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState, unmapped_note
from cp_debug.bisect.stages.screen import hold_as_run
from cp_debug.bisect.stages.stage_runner import make_stage_runner, probe_values
from cp_debug.bisect.stages.unprobed import as_written, check_unprobed, same_kernels
from cp_debug.bisect.subjects.subject import Stage
from cp_debug.compare.diff import TensorDiff

# An ONNX candidate's probe values held at once, at most (one run per chunk beyond it). Not tied to
# --memory-budget: which tensors a run exposes changes what ORT fuses and rounds, so a report must not depend on
# the budget (a `--memory-budget 0` run gives the default run's numbers).
CHUNK_BYTES = 1 << 30


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
        # no precision facts: no one reads the reference's (ORT's optimised graph of a 0.5 B FP32 file, its 2 GB of
        # weights written to the null device, was 0.8 of its session's 3.8 CPU s)
        runner = take_lent(run, i, sp, capture) or make_stage_runner(run, run.ref_spec, st, sp, capture_inputs=capture,
                                                                      calib=run.calib(i), facts=False)  # lent: decode's
        twins = None
        on_device = (streaming or binds_on_device(run.ref_spec)) and use_device_tier(run)
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
                from cp_debug.bisect.stages.device_twins import DeviceTwins

                twins = DeviceTwins(modules)  # once the runner is active: its module already on the device
                runner.on_device_probe = twins.keep
            # bound: the feed copied in once, for both runs and as the input probes' values (kept where they lie)
            fed = device_feed(feed, run.store.device) if bound else feed
            out = runner.infer_device(fed) if bound else lent_outputs(run, runner, feed) or runner.infer(feed)
            for name, v in probe_values(st, run.ref_spec, out, sp, fed).items():
                if not (on_device and run.store.put_device(name, to_device(v, run.store.device))):
                    run.store.put(name, to_host(feed[name] if v is fed.get(name) else v))  # an input: as it came
            if capture and not streaming:
                for key, v in out.items():
                    if ":in" in key:
                        run.store.put(key, v)
            stage_out = {k: to_host(out[k]) for k in st.output_names}
            del out
            if ran is not None:
                ran()
            if noise:
                _noise_run(run, runner, st, sp, fed, twins, streaming=streaming, on_device=on_device, bound=bound)
    run.execution.setdefault(st.name, "whole stage, probes exposed")
    return stage_out


def _noise_run(run: RunState, runner, st, sp: list[ProbeSpec], feed: dict, twins, *, streaming: bool,
               on_device: bool = False, bound: bool = False) -> None:
    """The reference's second run on the same feed (its runner active): each probe compared with the store, the
    differences are its noise floor (`run.noise`); `twins` compares on the device first where there are some, and
    so does the store's device tier (`on_device`), in batches (`device_twins.RepeatChecks`): bit for bit first, else
    `device_diff.diff_many`. A `bound` reference (ONNX Runtime through IO binding) runs on the device and its values
    are compared there too; its `feed` is the first run's, on the device already."""
    from cp_debug.bisect.stages.device_twins import RepeatChecks

    names = {p.name for p in sp}
    checks = RepeatChecks.on(run.store.device) if on_device else None

    def against_store(name: str, v) -> None:
        if name in run.store and name in names and not (on_device and against_device(name, v)):
            run.noise[name] = TensorDiff.from_arrays(name, run.store.get(name), to_host(v))

    def against_device(name: str, t) -> bool:
        if name not in names:
            return True  # a captured input: the first run's value stands
        kept = run.store.device_value(name)
        if kept is None:
            return False  # kept on the host: compared there
        checks.take(name, kept, to_device(t, kept.device))  # a stage output or input: a host array, copied in
        return True
    if streaming:
        runner.on_probe = against_store
    if twins is not None:
        runner.on_device_probe = twins.same
    elif on_device:
        runner.on_device_probe = against_device
    again = runner.infer_device(feed) if bound else runner.infer(feed)
    for name, v in probe_values(st, run.ref_spec, again, sp, feed).items():
        against_store(name, v)
    del again
    if checks is not None:
        checks.flush()
        run.noise.update(checks.found)
    if twins is not None:  # bit-identical on the device: no error, nothing to copy out or compare
        run.noise.update(twins.identical)
        twins.clear()


def candidate_stage(run: RunState, state: CandidateState, i: int, sp: list[ProbeSpec], feed: dict,
                    ahead: Ahead | None = None) -> dict:
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
    plain: dict | None = None  # the graph as deployed, where it ran beside the probed one (`_deployed`)
    same: bool | None = None  # ORT's graph as deployed runs the probed session's kernels (`unprobed.same_kernels`)
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
                runner = whole or _probed_runner(run, state, i, st, chunk, sole=len(chunks) == 1 and not device)
            if runner.can(Capability.STREAM_PROBES):  # compared as the hooks produce them: never all in memory
                runner.on_probe = _streamed_compare(run, state, {p.name for p in chunk}, diffs)
                if run.store.device is not None and spec.device == run.store.device.type:
                    runner.on_device_probe = _device_compare(run, state, {p.name for p in chunk}, diffs)
            with contextlib.nullcontext(runner) if whole or made else runner:
                fed = feed  # the probes' inputs: on the device where the run read them there (one copy in)
                if made is not None:
                    out, made.out = made.out, None
                    fed, made.feed = made.feed, None
                elif device:
                    fed = device_feed(feed, run.store.device)
                    out = runner.infer_device(fed)
                else:
                    out = runner.infer_some(feed, _exposed(st, spec, chunk)) if whole else runner.infer(feed)
                if k == 0:
                    plain, same = _first_run(run, state, i, sp, runner, feed, beside=made is not None, device=device)
                    hold_as_run(run, state, i, runner)  # its graph, for the stage's screen: not converted again
                vals = probe_values(st, spec, out, chunk, fed)
                del fed
                if stage_out is None:
                    stage_out = {n: to_host(out[n]) for n in st.output_names}
                del out
                _compare(run, state, st, chunk, vals, runner, diffs)
                del vals
                exposed.update(dict.fromkeys((p.name for p in chunk), _exposed(st, spec, sp if whole else chunk)))
                if k == len(chunks) - 1 and run.opts.local:
                    found = ahead.local(state.label) if ahead is not None else None
                    if found is not None:  # measured on a helper thread while the engine's compared
                        local = found.apply(run, state, i)
                    else:
                        with run.phases.timed(f"{state.label}: local errors"):
                            local = local_errors(run, state, i, sp, runner)
    _record(run, state, sp, diffs, exposed, local)
    state.int8_graphs.pop(st.name, None)  # its Q/DQ graph was held for its local errors only
    # the outputs' run exposed probes: its final outputs against the graph as deployed (`unprobed.py`)
    shown = _exposed(st, spec, chunks[0] if len(chunks) > 1 and not one_session else sp)
    check_unprobed(run, state, i, stage_out if shown else None, f"{len(set(shown))} probe tensors exposed", plain,
                   same=bool(same))
    return stage_out


def _record(run: RunState, state: CandidateState, sp: list[ProbeSpec], diffs: dict, exposed: dict,
            local: dict) -> None:
    """Each compared probe's result, judged with its local error, into the state; then its amplification."""
    for p in sp:
        if p.name in diffs:
            run.exposed[p.name] = exposed[p.name]
            loc, _ = local.get(p.name, (None, ()))
            state.results[p.name] = judged(run, state, p.name, diffs[p.name], loc).noted(state.notes.get(p.name))
    for name, (_, upstream) in local.items():
        if name in state.results:
            state.results[name] = replace(state.results[name],
                                          amplification=amplification(state, name, upstream))
            carry(run, state, name, upstream)


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
    free = free_gpu_memory()  # None: no CUDA runtime to ask, keep one session per chunk
    return free is not None and probe_bytes(run, sp) <= free // 2


def _probed_runner(run: RunState, state: CandidateState, i: int, st: Stage, chunk: list[ProbeSpec], sole: bool):
    """The candidate's runner with `chunk` exposed; where it is the stage's one run (`sole`), its session switches
    its local-error segments' boundaries (`local_error.switch_tensors`): they run there, not in a session more."""
    runner = make_stage_runner(run, state.spec, st, chunk, calib=run.calib(i))
    if sole and hasattr(runner, "switches"):
        runner.switches = switch_tensors(run, state, i, st)
    return runner


def _exposed(st: Stage, spec: BackendSpec, chunk: list[ProbeSpec]) -> tuple[str, ...]:
    pm = st.probe_map() if spec.runs_onnx else None
    return tuple(pm.tensors[p.name] for p in chunk if p.kind == "module" and p.name in pm.tensors) if pm else ()


def _deployed(run: RunState, state: CandidateState, st: Stage, sp: list[ProbeSpec], runner, feed: dict
              ) -> dict | None:
    """Where exposing the probes changed the candidate's kernels (ORT's INT8 fusion), the graph as deployed is run
    too and its outputs judged: the verdict rests on them (`verdict.py`), not only on the probed graph's. Returns its
    outputs (None where it did not run)."""
    ran = runner.infer_deployed(feed)
    if ran is None:
        return None
    out, rep = ran
    for p in sp:
        if p.kind == "output" and p.name in out and p.name in run.store:
            d = TensorDiff.from_arrays(p.name, run.store.get(p.name), out[p.name], run.tolerance(state, p.name))
            state.deployed[p.name] = carried_deployed(state, judged(run, state, p.name, d, None))
    prev = state.deployed_precision
    state.deployed_precision = rep if prev is None or prev.effective == rep.effective else replace(
        rep, effective="mixed", notes=prev.notes + rep.notes)
    return out


def _first_run(run: RunState, state: CandidateState, i: int, sp: list[ProbeSpec], runner, feed: dict, *,
               beside: bool, device: bool) -> tuple[dict | None, bool | None]:
    """After the first run of stage i: the runner described; the graph as deployed run where the probes changed its
    kernels (`_deployed`), else on the session of the file as written its decode kept (`unprobed.as_written`), else
    asked whether they changed none (`unprobed.same_kernels`); where they did, or it
    cannot tell, the session that check made runs the graph as deployed here (`infer_unprobed`: not made again
    after the stages). `beside`: its run and local errors went beside the reference's (said in the settings)."""
    st = run.stage_of(state.label, i)
    _describe(run, state, st, runner)
    plain = _deployed(run, state, st, sp, runner, feed) if not device and not beside else None
    if beside:
        state.settings[st.name]["ran_beside_reference"] = True
    if plain is None and not beside and not device:  # the file as written's session its decode kept, if any
        plain = as_written(run, state, i, runner, feed)
    same = same_kernels(run, state, i, runner) if plain is None else None
    if plain is None and not same and not beside and not device:
        with run.phases.timed("graph as deployed"), contextlib.suppress(Exception):  # else run after the stages
            plain = runner.infer_unprobed(feed)
    return plain, same


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
    note_int8_graph(run, state, st, runner)  # its Q/DQ graph, or a file's scales (`qdq_segments.py`)


def _streamed_compare(run: RunState, state: CandidateState, names: set[str], diffs: dict):
    def on_probe(key: str, arr: np.ndarray) -> None:
        if key in names and key in run.store:
            _compare_one(run, state, key, arr, diffs)
    return on_probe


def _compare(run: RunState, state: CandidateState, st: Stage, chunk: list[ProbeSpec], vals: dict, runner,
             diffs: dict) -> None:
    """Each probe of `chunk` against the store (missing ones recorded as such); values popped as compared. Those
    whose reference lies in the store's device tier are compared there together (`_OnDevice`)."""
    spec = state.spec
    together = _OnDevice(run, state, diffs)
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
        value = vals.pop(p.name)
        if not together.add(p.name, value):
            _compare_on_host(run, state, p.name, value, diffs)
    together.flush()


class _OnDevice:
    """Probes compared where the store's device tier keeps their reference, a batch at a time: their figures and
    plot arrays reach the host in three copies a batch (`device_diff.diff_many`, `record.keep_plots_device`), where
    one probe at a time waited on the device six times a probe. Values copied in from the host count towards
    `COPIED_BYTES`, past which the batch is compared (a host candidate's chunk is not all copied to the GPU)."""

    COPIED_BYTES = 1 << 28

    def __init__(self, run: RunState, state: CandidateState, diffs: dict):
        self.run, self.state, self.diffs = run, state, diffs
        self.batch: list[tuple] = []
        self.copied = 0

    def add(self, name: str, value) -> bool:
        """Takes a probe whose reference lies in the device tier (True; a host value is copied in: the host never
        reads it back); False for any other, and for a mask (small: compared on the host, its saturated fill as
        equal)."""
        from cp_debug.compare.device_diff import is_tensor

        kept = self.run.store.device_value(name)
        if kept is None or is_mask_probe(self.run, self.state, name):
            return False
        if not (is_tensor(value) and value.device == kept.device):
            self.copied += value.nbytes if isinstance(value, np.ndarray) else value.numel() * value.element_size()
        self.batch.append((name, kept, to_device(value, kept.device)))
        if self.copied > self.COPIED_BYTES:
            self.flush()
        return True

    def flush(self) -> None:
        from cp_debug.compare.device_diff import diff_many

        if not self.batch:
            return
        tol = self.run.tolerance
        found = diff_many([(n, k, v, tol(self.state, n)) for n, k, v in self.batch], one_pass=True)
        self.diffs.update({n: d for (n, _, _), d in zip(self.batch, found)})
        keep_plots_device(self.state, self.batch)
        self.batch, self.copied = [], 0


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
    """One probe's value against the store: its diff into `diffs`, its plot arrays into the state. Against a
    reference in the store's device tier it is compared there (`_OnDevice`, a batch of one); any other pair on the
    host."""
    one = _OnDevice(run, state, diffs)
    if one.add(name, value):
        one.flush()
    else:
        _compare_on_host(run, state, name, value, diffs)


def _compare_on_host(run: RunState, state: CandidateState, name: str, value, diffs: dict) -> None:
    """One probe's value against the store's host value (a torch tensor copied out); a mask (small) with its
    saturated fill taken as equal."""
    from cp_debug.compare.device_diff import host_array, is_tensor

    if is_tensor(value):
        value = host_array(value)
    ref = run.store.get(name)
    if is_mask_probe(run, state, name):
        value, note = mask_saturation(ref, np.asarray(value))
        if note:
            state.notes[name] = note
    diffs[name] = TensorDiff.from_arrays(name, ref, value, run.tolerance(state, name))
    note_massive(state, name, ref, value)
    keep_plot(state, name, ref, value)

"""Probing must not change the answer (issue 108, item 3).

An ONNX Runtime candidate is measured on a graph that is not the one deployed: its probe tensors exposed as extra
outputs (`stage_whole.py`: an exposed tensor can keep ORT from fusing the nodes around it, INT8 kernels among them)
or the stage cut into segments at its probes (`stage_lockstep.py`). Once per stage (the first pass, not the
refinement's) the candidate's graph as deployed — no probe exposed, one session over the whole stage — runs on the
same feed and its final outputs are compared with the measured run's: the same candidate, the same precision, so
anything beyond the candidate's budget (`noise.judge` at the precision it is judged at) is what probing changed.
Where the graph as deployed already ran beside the probed one (`state.deployed`: ORT's INT8 fusion), its outputs
are taken, not run again; where ORT's optimised graph without the probes computes the stage's outputs with the
probed session's own nodes (`same_kernels`, `backends/ort/ort_unprobed.py`: one session made, never run), the
probed run's outputs are the graph as deployed's and the check costs no run (issue 118: it took 4.0 s of the CPU
FP16 demo's 29.7 s); the record says so (`same_kernels`). Where the kernels differ (or it cannot tell), the session
that check made is the one run, right after the probed run (`infer_unprobed`; a 0.5 B LLM's INT4 file: one load
of the file, not two), and the outputs as deployed are kept for the intervention's "before" (`as_deployed`: not
run a third time where the feeds are the reference's). Where a `--generate` candidate's decode kept its session of
the file as written, made with options of the runner's numbers (`as_written`), that session runs the graph as
deployed: no other session of the file is made, neither to read its kernels nor to run it. Alike in the lockstep
(`chain_is_deployed`): a CPU FP16 lane's segments compute what the emulated graph as deployed computes (float32
kernels, float16 storage after every node: `precision.half_storage`), so its chain's outputs are taken (on the CPU
awml-base FP16 `--level all`, the rerun took 6.2 s of 33.8 s). Said in the report: `probe_effect` per candidate (JSON:
each stage's outputs, rel. RMS difference, budget, ratio) and, beyond the budget, a warning with the numbers. Torch
candidates' hooks read tensors without changing them; TensorRT's debug tensors are left to the engine's own build
(not run twice).
"""

from __future__ import annotations

import math

import numpy as np

from cp_debug.backends.spec import Capability
from cp_debug.errors import BackendRuntimeError
from cp_debug.precision.fp16_keep import FP32_ONLY_OPS, FP32_ONLY_SLOTS
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.bisect.subjects.subject import Stage

KEPT_BYTES = 1 << 28  # a stage's outputs as deployed kept for the intervention (`CandidateState.as_deployed`) at most


def check_unprobed(run: RunState, state: CandidateState, i: int, measured: dict | None, how: str,
                   plain: dict | None = None, same: bool = False) -> None:
    """Stage i's final outputs as `state` measured them (`measured`, `how`: "probes exposed" or "cut into N
    segments") against its graph as deployed (`plain`: its outputs where already run; `same`: the probed run's
    kernels are the graph as deployed's, `measured` are its outputs; else run once on the candidate's feed after
    every stage ran: `deferred`), recorded in `state.unprobed` and, beyond the budget, said as a warning."""
    st = run.stage_of(state.label, i)
    if not measured or not _wanted(run, state, i):
        return
    if plain is None and same:
        _record(run, state, i, measured, how, measured)
        state.unprobed[st.name]["same_kernels"] = True
        return
    if plain is None:  # run once the stages' helper threads are done (a session's first run is heard alone)
        state.unprobed_later[i] = (measured, how)
        return
    _record(run, state, i, measured, how, plain)


def same_kernels(run: RunState, state: CandidateState, i: int, runner) -> bool | None:
    """Whether stage i's probed runner runs its graph as deployed's kernels (`runner.probes_left_kernels`), asked
    only where the check still wants stage i; timed as the check's phase."""
    if not _wanted(run, state, i):
        return None
    with run.phases.timed("graph as deployed"):
        try:
            return runner.probes_left_kernels()
        except Exception:  # noqa: BLE001 - the check is extra: the graph as deployed is run instead
            return None


def as_written(run: RunState, state: CandidateState, i: int, runner, feed: dict) -> dict | None:
    """Stage i's graph as deployed from the session of the candidate's file as written that this process kept (a
    `--generate` candidate's decode: `ort_sessions.hold`), run on `feed`, where that session computes what the runner's
    graph as deployed would (`infer_as_written`); None otherwise (then `same_kernels` and `infer_unprobed` as before).
    No other session of the file is made to read its kernels or to run it (issue 116 item 5: a 0.5 B LLM's INT4 file
    was loaded a fifth time for that). Timed as the check's phase."""
    found = run.deployed.get(state.label)
    if found is None or i >= len(found.files) or not _wanted(run, state, i):
        return None
    with run.phases.timed("graph as deployed"):
        try:
            return runner.infer_as_written(found.files[i], feed)
        except Exception:  # noqa: BLE001 - the check is extra: the graph as deployed is run as before
            return None


# ops after which an FP16 conversion of the whole graph may keep float32 where a segment's keeps float16 (float32-only
# ops and slots, the float arithmetic in front of a Cast to an integer type) or that it does not convert (control flow)
_NOT_PLAIN_FP16 = FP32_ONLY_OPS | frozenset(FP32_ONLY_SLOTS) | {"Cast", "CastLike", "If", "Loop", "Scan"}


def chain_is_deployed(model, plan, lane, types: dict) -> bool:
    """Whether a lockstep lane's chain of segments computed its graph as deployed's values, so that its final
    outputs stand for that graph's with no run (`check_unprobed`'s `same`). That graph, an ONNX Runtime CPU FP16
    candidate's (`CPDEBUG_ORT_CPU_HALF` emulated), runs float32 kernels and rounds every float16 tensor to float16
    after its node (`precision.half_storage`); each of the lane's segments does the same on the CPU (`ort_runner`:
    `fp16_io` segments emulated alike, a group of them rounded at its cuts, `lockstep_grouped.py`; a segment of one
    node wrapped in ORT's own Casts, checked in its graph facts to run float32 kernels), and the values crossing a
    cut are float16. The chain computes the
    same where, besides: the lane keeps no node in FP32 and runs the run's own conversion (not a user's file); the
    stage holds no op after which the whole graph's conversion could keep float32 where a segment's rounds
    (`_NOT_PLAIN_FP16`: float32-only ops and slots, Casts, control flow); every tensor's type is known."""
    from cp_debug.backends.ort.ort_runner import half_mode

    spec, kw = lane.spec, lane.runner_kwargs
    if (spec.device != "cpu" or spec.precision != "fp16" or spec.onnx_dir is not None or half_mode() != "emulated"
            or kw.get("keep_fp32_nodes") or kw.get("keep_fp32_op_types")):
        return False
    nodes = model.graph.node
    if any(n.op_type in _NOT_PLAIN_FP16 for n in nodes) or not lane.transforms:
        return False
    if any(t.kind != "fp16" for t in lane.transforms) or len(lane.facts) != len(lane.transforms):
        return False  # every segment (or group of them) converted here, its facts read
    for facts, transform in zip(lane.facts, lane.transforms):
        if transform.half_storage is None and (facts.error or {*facts.compute_dtypes, *facts.other_float_dtypes}
                                               - {"float32"}):
            return False  # a segment of one node left to ORT's Casts: a float16 kernel there computes otherwise
    return all(t in types for seg in plan.segments for t in seg.outputs)


def _wanted(run: RunState, state: CandidateState, i: int) -> bool:
    """Whether stage i of `state` is still to be checked (an ONNX Runtime candidate that ran it, once a stage)."""
    st = run.stage_of(state.label, i)
    return (state.spec.can(Capability.ORT_SESSIONS) and state.refused is None and st.name not in state.unprobed
            and i not in state.unprobed_later and i in state.feeds)


def deferred(run: RunState, states: list) -> None:
    """The graphs as deployed that `check_unprobed` left for after the stages (each candidate's, each stage's); then
    the decisions read on them where probing moved them (`findings/decisions.record_deployed`)."""
    from cp_debug.bisect.findings.decisions import record_deployed

    for state in states:
        for i, (measured, how) in sorted(state.unprobed_later.items()):
            _record(run, state, i, measured, how, None)
        state.unprobed_later.clear()
    record_deployed(run, states)


def _record(run: RunState, state: CandidateState, i: int, measured: dict, how: str, plain: dict | None) -> None:
    """Stage i's `measured` outputs against its graph as deployed (`plain`: its outputs, None: run here), in
    `state.unprobed` and, beyond the budget, a warning; where that fails, a warning and no record."""
    st = run.stage_of(state.label, i)
    try:
        plain = plain if plain is not None else _run_plain(run, state, i, st)
        rows = _compare(state, st, measured, plain)
        if sum(np.asarray(v).nbytes for v in plain.values()) <= KEPT_BYTES:
            state.as_deployed[i] = plain
    except BackendRuntimeError:
        raise  # the runtime dies making the graph as deployed (`backends/ort/ort_crash.py`): that is the verdict
    except Exception as err:  # noqa: BLE001 - the check is extra; the run's verdict stands without it
        run.warnings.append(f"{state.label}: {st.name}'s graph as deployed (no probes) was not run to check that "
                            f"probing left its outputs as they are: {err}")
        return
    state.unprobed[st.name] = {"measured": how, "outputs": rows}
    beyond = [r for r in rows if r["beyond"]]
    if beyond:
        w = max(beyond, key=lambda r: r["ratio"])
        run.warnings.append(
            f"{state.label}: probing changed {st.name}'s outputs: measured with {how}, its output {w['output']} "
            f"differs from the same candidate's graph as deployed (no probes, one session) by rel. RMS "
            f"{w['rel_rmse']:.3g}, {w['ratio']:.3g}× {state.judged_at}'s budget {w['budget']:.3g}: the probes' "
            "numbers are not the deployment's (JSON probe_effect)")


def _run_plain(run: RunState, state: CandidateState, i: int, st: Stage) -> dict:
    """The candidate's stage graph without probes, one session, on its own feed of stage i."""
    from cp_debug.bisect.stages.stage_runner import make_stage_runner

    with make_stage_runner(run, state.spec, st, [], calib=run.calib(i), facts=False) as runner:
        return runner.infer(state.feeds[i])


def _compare(state: CandidateState, st: Stage, measured: dict, plain: dict) -> list[dict]:
    from cp_debug.compare import noise
    from cp_debug.compare.diff import TensorDiff

    rows = []
    for name in st.output_names:
        if name not in measured or name not in plain:
            continue
        a, b = np.asarray(plain[name]), np.asarray(measured[name])
        if a.shape != b.shape or not np.issubdtype(a.dtype, np.floating):
            continue
        d = TensorDiff.from_arrays(name, a, b)
        j = noise.judge(d, state.judged_at)
        rel = d.rel_rmse if math.isfinite(d.rel_rmse) else math.inf
        rows.append({"output": name, "rel_rmse": rel, "budget": j.expected_rel_rmse, "ratio": j.noise_ratio,
                     "beyond": j.beyond})
    return rows

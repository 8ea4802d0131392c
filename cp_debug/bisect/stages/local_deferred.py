"""Local errors where the verdict reads them (issue 118): a CPU lockstep's local runs put off until a probe is off.

A segment's local error (the candidate's segment alone, fed the reference's boundary) is read by the verdict only
where something is off: the root cause ranks every probe's own error once a probe diverges (`ranking.causes`), a
local fault is weighed against the median of the run's others (`verdict._local_fault`), a degraded probe is judged
by the budget it carries where its own segment is within (`record.carry`), and the findings explain a flip or a
NaN by it. On a run whose every probe is within its budget, no decision flipped and no box changed, it changes
nothing: the verdict is "within precision" by the propagated errors alone. So the segment lockstep runs no local
run until a probe is off (`Lockstep.defer`); from that probe on, it runs them as it goes, and the segments it
put off are caught up (`Lockstep.catch_up`: the reference once more over the stage up to the last of them, each
put-off local run beside it) — at once, or, where no probe of the run ends up off, never: their probes say so in a note
("local error not measured: …"), with no local value (never a 0). awml-base FP16 `--level all` on the 2-core CPU:
its 32 local runs (of 152 ONNX Runtime runs) and their comparisons not run, the report the same but for those
fields (docs/limits.md).

Not put off where a local error judges a probe within its budget too, or reads one before anything is off: a
weight-only precision (`weight_only.beyond_own`), a default level on a model with modules (`look_inside` reads the
blocks' own errors on a healthy run), a mask probe (its note counts the local value's saturated fill), a run
without determinism (the noise floor, measured where a local error is beyond, may move a budget), the grouped
lockstep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cp_debug.bisect.run_state import CandidateState, RunState

__all__ = ["NOT_MEASURED", "PutOff", "deferrable", "needs_local", "settle", "settle_run"]

NOT_MEASURED = ("local error not measured: no probe of the run is off its budget, so no segment's own error could "
                "change the verdict (issue 118; measured wherever one is)")


@dataclass
class PutOff:
    """A stage's lockstep that put local runs off: how to catch them up, and how to say they were not."""

    stage: int
    lockstep: object  # stages.lockstep.Lockstep
    on_local: Callable  # ProbeValues -> bool, as `Lockstep.run`'s on_probe (local values only)
    mark: Callable[[str], None]  # notes its put-off probes with the words given


def deferrable(run: RunState, st, states: list[CandidateState], grouped: bool) -> bool:
    """Whether stage `st`'s lockstep may put its local runs off (module docstring)."""
    from cp_debug.compare import noise

    o = run.opts
    return (o.local and not grouped and o.deterministic and not run.local_armed
            and not (o.refine and o.level is None and st.has_module)
            and not any(s.judged_at in noise.WEIGHT_ONLY_UNIT for s in states)
            and not run.mask_tensors(st))


def needs_local(s: CandidateState) -> bool:
    """Whether `s`'s verdict could read a local error not measured: a probe off (beyond its budget or the tolerance,
    NaN/Inf, a shape) or its own segment beyond where measured, its graph as deployed beyond, a decision its outputs
    or the glue carry changed, its detections changed."""
    if s.refused is not None:
        return False
    rows = [*s.results.values(), *s.deployed.values()]
    if any(r.status not in ("ok", "missing") or (r.judgement is not None and r.judgement.beyond)
           or (r.local_judgement is not None and r.local_judgement.beyond) for r in rows):
        return True
    if any(getattr(d, "changed", True) for d in s.decisions) or getattr(s.detections, "changed", False):
        return True
    return any(o.get("beyond") for u in s.unprobed.values() for o in u.get("outputs", ()))


def settle(run: RunState, put: PutOff) -> None:
    """After a stage's lockstep: where a probe was off (it armed), every run put off so far is caught up and the
    stages after measure theirs as they go; else its put-off runs wait for `settle_run`."""
    if not put.lockstep.deferred:
        run.local_armed = run.local_armed or put.lockstep.armed
        return
    run.local_put_off.append(put)
    if put.lockstep.armed:
        _catch_up_all(run)


def settle_run(run: RunState, states: list[CandidateState]) -> None:
    """Before the verdicts: the put-off local runs caught up where a candidate needs them (`needs_local`), else
    their probes noted; later passes (refinement) measure theirs as they go."""
    if run.local_put_off and any(needs_local(s) for s in states):
        _catch_up_all(run)
    for put in run.local_put_off:
        put.mark(NOT_MEASURED)
    run.local_put_off.clear()
    run.local_armed = True


def _catch_up_all(run: RunState) -> None:
    run.local_armed = True
    while run.local_put_off:
        put = run.local_put_off.pop(0)
        with run.phases.timed("local errors (caught up)"):
            put.lockstep.catch_up(run.ref_feeds[put.stage], put.on_local,
                                  label=f"{run.subject.stages[put.stage].name}: ")

"""`--generate` on an ONNX file (issue 116 item 5): the reference's file loaded once, for its decode and its probes.

The reference's decode says which forward the bisect compares (the prompt and the reference's tokens before the
first flipped step), so it must come before stage 0's feed; its probed run needs a session of the file with every
probe exposed. A 0.5 B builder file's FP32 weights are 2 GB, and each ONNX Runtime session of it took 5 s to make
(as long as the whole floor's decode of it): the decode had its own, the probed run another. Now the engine makes the
reference's stage-0 runner first (`lend_reference`: the same runner `stage_whole.reference_stage` would make, the
same probes, options and determinism) and the decode runs on its session, asking ONNX Runtime for the logits and
the cache only (the probes' tensors are computed, not copied out); the reference stage then takes that runner,
still active (`take_lent`), and runs the step's forward with its probes on it.

The decode is then the reference's as the bisect measures it (its probes exposed, its session options), the values
the candidate is compared with; the reference is ONNX Runtime running the file as it is at FP32 on the CPU (no
precision transform: `generation._on_probed_session`), else it decodes on its own session of the file as before.
The file's load check as written (`deployed.refuse_unloadable_given`, exit 3) is made where that runner's session
cannot be made, not beforehand: it loaded the whole file again (ORT_DISABLE_ALL: 5.9 s).

That runner's session is made on a helper thread (`start_lending`, once the probes are known) while the main thread
decodes the candidate's file as written and then checks and maps the deployed files: ONNX Runtime makes a session on
one core without the GIL (the 0.5 B FP32 file's: 3-4 s), the candidate's decode is its INT4 session and 9 runs (1.5 s,
in the load before s24: the main thread then waited for the reference's session the longer), the mapping is numpy on
the main thread (0.9-1.4 s: the weights' rounding, the twin projections); the decode waits for it
(`lend_reference`). Not in a server that keeps its sessions (its keep captures the process's stderr around a
session's making: `ort_kept.speaking`); the candidate's decode is then made where the reference's is.

Where the forward bisected is the prompt's prefill (no token flipped, or the first did), the decode's first step is
that forward on that session: it is run with every output copied out, and those are the reference stage's run
(`lent_outputs`: the same session, the same feed, checked), not made again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from cp_debug.bisect.run_state import RunState


@dataclass
class Lending:
    """The reference's stage-0 runner being activated on a helper thread (`start_lending`) for `probes`, `capture`."""

    runner: object
    probes: tuple
    capture: bool
    thread: threading.Thread | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def activate(self) -> None:
        try:
            self.runner.activate()
        except BaseException as err:  # noqa: BLE001 - raised again on the main thread (`wait`)
            self.error = err
        finally:
            self.done.set()

    def wait(self):
        """The runner, active, once its helper thread is done; what its activation raised, raised here."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.runner


def start_lending(run: RunState, probes: list, capture: bool) -> None:
    """Where the subject's decode is pending (and no server keeps the sessions): the reference's stage-0 runner made
    (its probes: those of `probes` in stage 0; `capture`: as the reference stage asks) and its session made on a
    helper thread; `lend_reference` waits for it."""
    from cp_debug.backends.ort import ort_kept
    from cp_debug.bisect.stages.stage_runner import make_stage_runner

    if run.subject.pending_decode is None or run.lending is not None or ort_kept.keeping():
        return
    sp = [p for p in probes if p.stage == 0]
    runner = make_stage_runner(run, run.ref_spec, run.subject.stages[0], sp, capture_inputs=capture, facts=False)
    lending = run.lending = Lending(runner, tuple(p.name for p in sp), capture)
    lending.thread = threading.Thread(target=lending.activate, name="cpdebug-reference-session", daemon=True)
    lending.thread.start()
    candidate = run.subject.pending_decode.candidate
    if candidate is not None:  # the candidate's decode meanwhile, on this thread (its session, its N + 1 runs)
        with run.progress.step("the candidate: its decode (--generate, its file as written)"), \
                run.phases.timed("decode"):
            candidate()


def lend_reference(run: RunState, probes: list, capture: bool) -> None:
    """Where the subject's decode is pending: the reference's stage-0 runner made (its probes: those of `probes` in
    stage 0; `capture`: as the reference stage asks; the one `start_lending` began, where it was for these), the
    decode run on it, its lines said and put first among the run's warnings, the runner kept active in `run.lent`."""
    from cp_debug.bisect.stages.stage_runner import make_stage_runner

    pending = run.subject.pending_decode
    if pending is None:
        return
    run.subject.pending_decode = None
    sp = [p for p in probes if p.stage == 0]
    lending, run.lending = run.lending, None
    if lending is not None and (lending.probes, lending.capture) != (tuple(p.name for p in sp), capture):
        _let_go(lending)  # made for other probes: not this one
        lending = None
    runner = lending.runner if lending is not None else make_stage_runner(
        run, run.ref_spec, run.subject.stages[0], sp, capture_inputs=capture, facts=False)
    with run.progress.step(f"reference {run.ref_label}: the decode (--generate, on its probed session)"), \
            run.phases.timed("decode"):
        try:
            lending.wait() if lending is not None else runner.activate()
        except Exception:
            pending.check()  # the file as written refused: ONNX Runtime's own line, exit 3
            raise
        first: list = []

        def forward(feed: dict) -> dict:  # the first step (the prompt's prefill) with every output: `lent_outputs`
            if first:
                return runner.infer_some(feed, ())
            first.extend((runner, feed, runner.infer(feed)))
            return first[2]
        try:
            answer = pending.decode(forward)
        except BaseException:
            runner.deactivate()
            raise
    for line in answer.lines:
        run.progress.warn(line)
    run.warnings[:0] = answer.lines
    run.lent, run.lent_first = (runner, tuple(p.name for p in sp), capture), tuple(first) or None


def take_lent(run: RunState, index: int, sp: list, capture: bool):
    """The runner `lend_reference` made, active, where stage `index` with probes `sp` and `capture` is what it was
    made for (taken once); None otherwise (one made for something else is let go)."""
    lent, run.lent = run.lent, None
    if lent is None:
        return None
    runner, names, captured = lent
    if index == 0 and names == tuple(p.name for p in sp) and captured == capture:
        return runner
    runner.deactivate()
    run.lent_first = None
    return None


def lent_outputs(run: RunState, runner, feed: dict) -> dict | None:
    """What the decode's first step on the lent `runner` returned (every output, its probes among them), where
    `runner` is to run `feed` now and that step's feed was the same (the prompt's prefill: no token flipped, or the
    first did): the same session on the same feed, not run again (a 0.5 B FP32 file's probed forward); None
    otherwise. Taken once."""
    from cp_debug.backends.feed import same_feed
    from cp_debug.backends.spec import Capability

    first, run.lent_first = run.lent_first, None
    if first is None or first[0] is not runner or runner.can(Capability.STREAM_PROBES):
        return None
    return first[2] if same_feed(first[1], feed) else None


def release_lent(run: RunState) -> None:
    """A lent runner no stage took, let go (the engine's close), and one still being made (a run stopped before its
    decode)."""
    lent, run.lent, run.lent_first = run.lent, None, None
    if lent is not None:
        lent[0].deactivate()
    lending, run.lending = run.lending, None
    if lending is not None:
        _let_go(lending)


def _let_go(lending: Lending) -> None:
    """The runner `lending` made, once its thread is done, let go."""
    lending.done.wait()
    lending.runner.deactivate()

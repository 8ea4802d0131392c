"""A candidate's stage, run ahead on helper threads while the reference runs it (ONNX Runtime on the store's device).

Where the reference's probes go to the store's device tier and an ONNX Runtime candidate reads and writes the same
device (`placement.device_whole`, or a torch CUDA reference's streamed probes), the candidate's work need not wait
for the reference's to finish:

- its graph is prepared and its session made while the reference runs the stage (the FP16 conversion, the session,
  cuDNN's plans on the first run are host work: on the H100 ~1 s of awml-base's backbone, as long as the reference's
  own run);
- it runs the stage as soon as the reference's first run has filled the store, beside the reference's noise run;
- its local errors (`local_error.segment_errors`) start there too: segments cut, sessions made and run beside the
  noise run, each value measured once the noise floor is known (it sets the tolerances), beside the engine's thread
  comparing the candidate's probes.

One helper thread takes the candidates' runs in order, another their local errors: GPU memory holds what the
serial order held, plus one candidate's probes during the noise run (each run still checks that its probe tensors
fit half the free memory first, as `placement.compares_on_device` does, and falls back to the serial path where
they do not). Values are the same as one after the other: the same calls on the same inputs (ONNX Runtime on its own
CUDA stream, torch's default stream synchronised before it reads, `ort_binding.run_bound`). What the helpers find
lands in the run's state on the engine's thread, in the order it always did (`take`, `local`). On CUDA each
helper queues its torch work on a stream of its own (`_on_own_stream`).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.stages.local_error import LocalErrors, segment_errors
from cp_debug.bisect.run_state import CandidateState, ProbeSpec, RunState
from cp_debug.bisect.stages.placement import binds_on_device, compares_on_device, device_feed, tier_device
from cp_debug.bisect.stages.stage_runner import make_stage_runner
from cp_debug.parallel import on_stream

__all__ = ["Ahead", "AheadRun", "runs_ahead"]


def runs_ahead(run: RunState, spec: BackendSpec) -> bool:
    """Whether candidate `spec` can run a stage ahead: ONNX Runtime read through IO binding (not INT8, not the user's
    deployed files) on the device where the reference's probes lie (`placement.tier_device`)."""
    if not run.opts.overlap or spec.onnx_dir is not None or not binds_on_device(spec):
        return False
    tier = tier_device(run)
    return tier is not None and spec.device == tier


@dataclass
class AheadRun:
    """A candidate's stage run made ahead: its active runner (the caller deactivates it) and the outputs of its one
    run with every probe exposed, on the device; `out` None where the probes did not fit the device (the runner is
    then closed: the serial path runs instead). `seconds`: the helper's time on it, waiting for the reference aside.
    `feed`: the stage's inputs as the run read them, on the device (the input probes' values: not copied in again);
    None with `out`."""

    runner: object
    out: dict | None
    seconds: float
    feed: dict | None = None


class Ahead:
    """The helper threads of one stage's candidates. `start` each eligible candidate before the reference runs the
    stage; call `reference_ran` once its first run has filled the store (the runs and local errors go),
    `reference_done` once its noise run is over (the local errors' values are measured); `take` and `local` give each
    candidate's results on the engine's thread; `close` (always) waits for the helpers and deactivates what nobody
    took."""

    def __init__(self, run: RunState, i: int, sp: list[ProbeSpec]):
        self.run, self.i, self.sp = run, i, sp
        self._runs: dict[str, Future] = {}
        self._locals: dict[str, Future] = {}
        self._filled = threading.Event()
        self._noise_known = threading.Event()
        self._cancelled = False
        self._run_pool: ThreadPoolExecutor | None = None
        self._local_pool: ThreadPoolExecutor | None = None
        self.seconds: dict[str, float] = {}  # label -> the helper's seconds on its run (`take`)

    def start(self, state: CandidateState, feed: dict) -> None:
        if self._run_pool is None:
            self._run_pool = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-ahead")
        self._runs[state.label] = self._run_pool.submit(self._timed_run, state, feed)

    def reference_ran(self) -> None:
        """The reference's first run has filled the store: the candidates' runs go, and their local errors (cut and
        run now, measured once `reference_done` says the noise floor is known)."""
        self._filled.set()
        if not self.run.opts.local or self._cancelled:
            return
        for label in self._runs:
            state = self.run.states[label]
            if self._local_pool is None:
                self._local_pool = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-local")
            self._locals[label] = self._local_pool.submit(_on_own_stream, self.run.store.device, self._local_errors,
                                                          state)

    def reference_done(self) -> None:
        """The reference has finished the stage, its noise run included."""
        self._noise_known.set()

    def take(self, label: str) -> AheadRun | None:
        """The candidate's run, None where it did not start one (raises what the helper raised, on this thread); its
        seconds go to `seconds`."""
        fut = self._runs.pop(label, None)
        if fut is None:
            return None
        made = fut.result()
        self.seconds[label] = made.seconds
        return made

    def local(self, label: str) -> LocalErrors | None:
        """The candidate's local errors, None where they were not measured ahead (raises what the helper raised)."""
        fut = self._locals.pop(label, None)
        return None if fut is None else fut.result()

    def close(self) -> None:
        self._cancelled = True
        self._filled.set()
        self._noise_known.set()
        for fut in [*self._runs.values(), *self._locals.values()]:
            try:
                got = fut.result()
            except BaseException:  # noqa: BLE001 - nobody took it: the engine's own error is the one to raise
                continue
            if isinstance(got, AheadRun) and got.runner is not None:
                got.runner.__exit__(None, None, None)
        self._runs.clear()
        self._locals.clear()
        for pool in (self._run_pool, self._local_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._run_pool = self._local_pool = None

    def __enter__(self) -> "Ahead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- on the helper threads ---------------------------------------------------------------------------------
    def _measure(self) -> None:
        """What the local errors wait for before measuring a value: the noise floor; `_Cancelled` once the engine
        has given up on the stage (its own error is the one raised), so they stop there."""
        self._noise_known.wait()
        if self._cancelled:
            raise _Cancelled()

    def _local_errors(self, state: CandidateState) -> LocalErrors:
        with self.run.phases.timed(f"{state.label}: local errors", beside=True):
            return segment_errors(self.run, state, self.i, self.sp, self._measure)

    def _timed_run(self, state: CandidateState, feed: dict) -> AheadRun:
        with self.run.phases.timed(f"{state.label}: run", beside=True):
            return self._run(state, feed)

    def _run(self, state: CandidateState, feed: dict) -> AheadRun:
        run, i, sp = self.run, self.i, self.sp
        t0 = time.perf_counter()
        runner = make_stage_runner(run, state.spec, run.stage_of(state.label, i), sp, calib=run.calib(i))
        runner.__enter__()
        try:
            waited = time.perf_counter()
            self._filled.wait()
            t0 += time.perf_counter() - waited  # waiting on the reference is not this candidate's time
            if self._cancelled or not compares_on_device(run, state.spec, sp):
                runner.__exit__(None, None, None)
                return AheadRun(None, None, time.perf_counter() - t0)
            def ran() -> tuple[dict, dict]:
                fed = device_feed(feed, run.store.device)
                return fed, runner.infer_device(fed)
            fed, out = _on_own_stream(run.store.device, ran)
        except BaseException:
            runner.__exit__(None, None, None)
            raise
        return AheadRun(runner, out, time.perf_counter() - t0, fed)


class _Cancelled(BaseException):
    """The stage was given up (`Ahead.close` before the results were taken): a BaseException, so that no handler
    of a failing segment (which would run it alone) takes it for one."""


def _on_own_stream(device, fn, *args):
    """`fn(*args)` on a CUDA stream of its own where `device` is a CUDA device: ordered after what the engine's thread
    has queued on the device so far (the store's values), its work complete on return. Without it a helper's waits
    (each comparison's copy of its figures, `ort_binding.run_bound`'s sync before ONNX Runtime reads) would wait for
    everything the engine's thread queues on the default stream meanwhile. Elsewhere `fn(*args)` as it is."""
    if device is None or getattr(device, "type", None) != "cuda":
        return fn(*args)
    import torch

    return on_stream(torch.cuda.Stream(device=device), fn, *args, after_default=True)

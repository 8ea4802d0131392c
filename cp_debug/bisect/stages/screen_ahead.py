"""The screen's runs made ahead (issue 87, item 4): a stage's screen (`screen.py`) started on a helper thread as soon
as the stage's feeds are known, while the reference and the candidates run the stage.

The screen is wanted only where the candidate's own run found nothing, which is known once the stage has run; made
after it, its conversion, two sessions and two runs were the longest part of a bisect on a card (awml-base's ORT
pair on an H100: 3.9 s of a 7.2 s warm bisect, where the stage's own runs took 2.3 s). Where the device has the
room — a CUDA candidate, whose card the bisect's host-bound work leaves mostly idle, and a host of more cores than
the runs' threads use —, the screen's runs start at once, one stage and candidate after another on one helper
thread (its FP32 run beside it, as `screen.screen_runs` makes them); a stage whose run diverged throws its runs away.
What is found is the same as one after the other: the same graph, feeds, sessions and runs, judged on the engine's
thread in the order it always was (`screen.hidden_fault`). CUDA work is queued on a stream of the helper's own,
after what the engine's thread queued before the start (the feeds' values).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from cp_debug.bisect.stages.ahead import _on_own_stream
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.bisect.stages.screen import ScreenRuns, screen_runs, wants_screen

__all__ = ["ScreenAhead", "screens_ahead"]


def screens_ahead(run: RunState, state: CandidateState) -> bool:
    """Whether `state`'s screens start ahead: `BisectOptions.screen_ahead`, by default (None) where the candidate
    runs on a CUDA device and the run may overlap its work (`overlap`)."""
    wanted = run.opts.screen_ahead
    if wanted is None:
        return run.opts.overlap and state.spec.device != "cpu"
    return wanted


class ScreenAhead:
    """`start(states, i)` once stage i's feeds are known; `runs(state, i)` on the engine's thread gives what the
    helper made (None where it did not start it; raises what the helper raised); `close` (always) drops what nobody
    took."""

    def __init__(self, run: RunState):
        self.run = run
        self._pool: ThreadPoolExecutor | None = None
        self._made: dict[tuple[str, int], Future] = {}
        self._fp32: dict = {}  # FP32's runs, on the helper's thread alone

    def start(self, states: list[CandidateState], i: int) -> None:
        """Stage i's screen for each candidate that would have it were the stage to find nothing (an earlier stage
        that diverged already tells that candidate's story: none)."""
        for s in states:
            if not screens_ahead(self.run, s) or not wants_screen(self.run, s, i):
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-screen-ahead")
            self._made[(s.label, i)] = self._pool.submit(_on_own_stream, self.run.store.device, screen_runs,
                                                         self.run, s, i, self._fp32)

    def runs(self, state: CandidateState, i: int) -> ScreenRuns | None:
        fut = self._made.pop((state.label, i), None)
        return None if fut is None else fut.result()

    def close(self) -> None:
        """What nobody took is dropped: not begun, never begun; a run under way (its stage diverged meanwhile) ends
        on the helper beside the run's refinement, its sessions then closed, not waited for here."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._made.clear()
        self._pool = None

    def __enter__(self) -> "ScreenAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

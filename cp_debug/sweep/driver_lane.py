"""Frames run in the driver's own process while Ray and its actors start (issue 87, item 2: fixed costs behind the
frames).

A `--ray local` sweep waited for its actors before any frame ran: Ray's own start (2.6-5.4 s on the 2-core CPU
machine, 3.3 s on a GPU host), then each actor's process, its imports, its model and its sessions (4 s on the CPU
machine, 4-6 s on a GPU host) — while the driver, which builds the model and exports its stages for them meanwhile,
waited too. The driver lane opens the sweep's worker in the driver (the in-process sweep's, on the subject the driver
exported) on a thread of its own as soon as the export is done, Ray still starting, and takes frames one at a time
from the front of the sweep's plan (`chunks.ChunkPlan`, shared with the actors' chunks under its lock) until every
actor has its sessions open; then it finishes the frames it holds and closes (its sessions and their memory let go).

Ray's start forks (its GCS and raylet, with `preexec_fn`), and OpenBLAS's fork handler stops its threads in the
forking process: a numpy BLAS call under way on another thread then waits for them for ever (the lane's scene
reading hung in `exec_blas`; 5 lines of numpy and `subprocess` show it). So the lane runs with the BLAS libraries
at one thread (threadpoolctl, process-wide, put back when it ends), and there is no lane where threadpoolctl is
missing.

Its frames are the in-process sweep's frames: each frame's result is the same whichever worker runs it (the reports
of a Ray sweep and an in-process one are identical), so the report does not depend on how many frames the lane ran.
A lane that fails to open, or whose frame loop fails, gives back the frames it had not returned, first in the plan,
and the actors run them; its error is said in the executor's description (`settings.executor.driver_lane`).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

LANE = "driver"  # the lane's key in the chunk plan


class DriverLane:
    """The driver's worker on a thread of its own, taking frames of `plan` (a `ChunkPlan`) one at a time until
    `stop`; `turn` (the driver's loop) gives what it returned."""

    live = True

    def __init__(self, settings, subject, plan):
        self.settings, self.subject, self.plan = settings, subject, plan
        self.began = time.time()
        self.opened: float | None = None  # when its sessions were open (epoch seconds)
        self.stopped: float | None = None
        self.error: str | None = None
        self.frames = 0
        self._events: queue.SimpleQueue = queue.SimpleQueue()  # ("frame", r) | ("failed", why)
        self._lock = threading.Lock()  # a frame taken from the plan is in `_given` at once (`busy` sees it)
        self._given: dict[int, Any] = {}  # frame index -> (index, frame): taken, not returned yet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpdebug-driver-lane", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Frames it took from the plan and has not returned."""
        with self._lock:
            return bool(self._given)

    @property
    def waiting(self) -> bool:
        """It may still bring frames: the driver waits on Ray's results a short while at a time."""
        return self.busy or self.stopped is None

    def turn(self, actors_up: bool, wait: float) -> tuple[list, bool]:
        """One turn of the driver's loop: the frames (`FrameResult`) returned since the last turn, waiting up to
        `wait` s for the first; where the actors are up, or the lane failed, it is stopped and leaves the plan (a
        failed lane's frames back in it, first). Returns those frames, and whether frames went back into the plan
        (the actors to be fed)."""
        got = []
        try:
            event = self._events.get(timeout=wait) if wait > 0 else self._events.get_nowait()
            while True:
                kind, value = event
                if kind == "frame":
                    got.append(value)
                    with self._lock:
                        self._given.pop(value.index, None)
                else:
                    self.error = value
                event = self._events.get_nowait()
        except queue.Empty:
            pass
        back = False
        if actors_up or self.error is not None:
            self.stop()
            with self._lock:  # after a failure nothing more comes back: what it holds goes to the actors
                unfinished = [self._given.pop(i) for i in sorted(self._given)] if self.error is not None else []
            self.plan.leave(LANE, unfinished)
            back = bool(unfinished)
        self.frames += len(got)
        return got, back

    def stop(self) -> None:
        if self.stopped is None:
            self.stopped = time.time()
            self._stop.set()

    def close(self) -> None:
        self.stop()
        self._thread.join()

    def describe(self, zero: float) -> dict:
        """The frames it ran, and when (seconds from `zero`, the frames phase's start) it began, had its sessions
        open and was stopped."""
        def at(t):
            return None if t is None else round(t - zero, 2)

        return {"frames": self.frames, "began": at(self.began), "open": at(self.opened), "stopped": at(self.stopped),
                "error": self.error}

    # -- the lane's thread ------------------------------------------------------------------------------------
    def _items(self):
        """The plan's frames from its front (one at a time: the lane tells it no speed), until stopped or none is
        left."""
        while not self._stop.is_set():
            with self._lock:
                taken = self.plan.next(LANE)
                self._given.update({item[0]: item for item in taken})
            if not taken:
                return
            yield from taken

    def _run(self) -> None:
        from cp_debug.errors import first_line

        from threadpoolctl import threadpool_limits

        worker, limits = None, threadpool_limits(1, user_api="blas")  # no BLAS call of its waits on a fork's handler
        try:
            worker = self.settings.lanes().make_worker(self.settings, subject=self.subject).open()
            self.opened = time.time()
            for r in worker.run_frames(self._items()):
                self._events.put(("frame", r))  # `busy` until the driver's `turn` has read it
        except BaseException as err:  # noqa: BLE001 - the actors run its frames; said in the description
            self._events.put(("failed", f"{type(err).__name__}: {first_line(str(err))[:200]}"))
        finally:
            if worker is not None:
                worker.close()
                _free_cuda()
            limits.restore_original_limits()


def _free_cuda() -> None:
    """The lane's cached CUDA memory given back to the card its actors share."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class _NoLane:
    """No driver lane (a cluster not of this machine's own): nothing to turn."""

    live = busy = waiting = False

    def turn(self, actors_up: bool, wait: float) -> tuple[list, bool]:
        return [], False

    def close(self) -> None:
        pass

    def describe(self, zero: float) -> None:
        return None


NO_LANE = _NoLane()

"""One `RayExecutor.run`'s hand-out (`Dispatch`): the frames' plan (`chunks.ChunkPlan`; the driver's lane takes frames
of it too), the chunks running on each actor (`actor.DEPTH` queued on each), and the shards filled as frames come
back, each written once all its frames are. Each actor's frames and its chunks' own seconds, and the driver's seconds
taking chunks back, counted for the executor's record."""

from __future__ import annotations

import time

from cp_debug.errors import CpDebugError
from cp_debug.sweep.actor import DEPTH
from cp_debug.sweep.chunks import ChunkPlan, ShardFill
from cp_debug.sweep.records import FrameResult
from cp_debug.sweep.shards import ShardTask


class Dispatch:
    """The hand-out of `ex`'s run (a `RayExecutor`: its actors, stages and shipping): `write(index, frames)` writes a
    shard on the run's writer thread, in order; `on_frame` and `on_tables` as `RayExecutor.run`'s."""

    def __init__(self, ex, tasks: list[ShardTask], plan: ChunkPlan, write, on_frame, on_tables):
        self.ex, self.write, self.on_frame, self.on_tables = ex, write, on_frame, on_tables
        self.fill = ShardFill(tasks)
        self.plan = plan
        self.running: dict = {}  # ObjectRef -> (actor's number, chunk)
        self.queued = [0] * len(ex.actors)
        self.peaks: dict[int, dict] = {}
        self.chunks = 0
        # each actor's frames back, its chunks' own seconds, its chunks and the longest of them
        self.work = [[0, 0.0, 0, 0] for _ in ex.actors]
        self.busy = 0.0  # the driver's seconds taking chunks back (`chunk_back`)
        self.writes = [write(index, got) for index, got in self.fill.finished()]

    def feed_all(self) -> None:
        for i in range(len(self.ex.actors)):
            self.feed(i)

    def feed(self, i: int) -> None:
        while self.queued[i] < DEPTH and len(self.plan):
            chunk = self.plan.next(i)
            sent = self.ex.shipping.frames(i, chunk)  # a file's frames read here for an actor on another host
            self.running[self.ex.actors[i].run_chunk.remote(sent, self.ex.stages)] = (i, chunk)
            self.queued[i] += 1

    def chunk_back(self, ray, ref) -> None:
        """A chunk's result: the actor fed again before its frames are read (its next chunks queued meanwhile)."""
        began = time.perf_counter()
        i, chunk = self.running.pop(ref)
        self.queued[i] -= 1
        got = _result(ray, ref)
        self.plan.tell(i, len(chunk), got["seconds"])
        work = self.work[i]
        work[0], work[1], work[2], work[3] = work[0] + len(chunk), work[1] + got["seconds"], work[2] + 1, max(
            work[3], len(chunk))
        self.feed(i)
        self.chunks, self.peaks[i] = self.chunks + 1, got["peak"]
        for d in got["frames"]:
            self.returned(FrameResult.from_json(d), got["tables"])
        self.busy += time.perf_counter() - began

    def returned(self, r: FrameResult, tables: dict) -> None:
        if self.on_tables is not None and r.token in tables:
            self.on_tables(r.token, tables[r.token])
        self.on_frame(r)
        if (done := self.fill.add(r)) is not None:
            self.writes.append(self.write(*done))


def _result(ray, ref) -> dict:
    """A chunk's result; a `CpDebugError` raised in the actor is raised here as itself (one line for the user)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, CpDebugError):
            raise cause from None
        raise

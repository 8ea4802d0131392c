"""How a Ray sweep hands its frames out: in chunks sized by each worker's measured speed, apart from the shard files.

`ChunkPlan` is pure (no Ray, no clock of its own: the caller tells it what each chunk took), in the manner of guided
self-scheduling: a worker asks for its next chunk and gets `k`-th part of its share of the frames still to hand out —
its share being its measured frames/s over all workers' — so the chunks are long while much is left and shrink to
single frames at the end, where a long last chunk would leave the other workers idle (the tail). A chunk never holds
more than `most_seconds` of that worker's measured work, so results (and the shard files, the progress) keep coming;
a worker not measured yet gets `first` frames. A worker's speed is its frames over its latest chunks' seconds, back
to `most_seconds` of them: an actor's frame loop runs a chunk's first frame while it judges the one before, so a
one-frame chunk can come back in hundredths of a second (its work counted in the chunk before), and a speed read off
that chunk alone (60-100 frames/s where the actor ran 4.4) handed the next chunk 200-255 frames, most of a
1000-frame sweep's tail on one actor (issue 87, 2 × H200). `ShardFill` gathers the returned frames into the shards
of the plan on disk (`shards.plan_shards`): a shard is written once all its frames are back, whichever chunks brought
them.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Hashable, Iterable

from cp_debug.data.frames import Frame
from cp_debug.sweep.records import FrameResult
from cp_debug.sweep.shards import ShardTask

Item = tuple[int, Frame]


class ChunkPlan:
    """The frames still to hand out, in order; `next(worker)` the next chunk for a worker, `tell(worker, frames,
    seconds)` what a chunk of it took (its time in the worker, without the queue)."""

    def __init__(self, items: Iterable[Item], workers: Iterable[Hashable], first: int = 1, k: float = 2.0,
                 most_seconds: float = 4.0):
        self.items: deque[Item] = deque(items)
        self.workers = list(workers)
        self.first, self.k, self.most_seconds = max(1, first), k, most_seconds
        self.rate: dict[Hashable, float] = {}  # worker -> frames/s of its latest chunks (`tell`)
        self._recent: dict[Hashable, deque] = {}  # worker -> its latest chunks' (frames, seconds)
        self.lock = threading.RLock()  # the driver's lane takes its frames on a thread of its own (`driver_lane.py`)

    def __len__(self) -> int:
        return len(self.items)

    def size(self, worker: Hashable) -> int:
        """The next chunk's length for `worker` (0 when nothing is left)."""
        left = len(self.items)
        if not left:
            return 0
        mine = self.rate.get(worker)
        if mine is None:
            return min(left, self.first)
        known = [self.rate[w] for w in self.workers if w in self.rate]
        mean = sum(known) / len(known)
        total = sum(self.rate.get(w, mean) for w in self.workers)
        share = mine / total if total > 0 else 1 / len(self.workers)
        n = math.ceil(left * share / self.k)
        return max(1, min(left, n, math.ceil(mine * self.most_seconds)))

    def next(self, worker: Hashable) -> tuple[Item, ...]:
        with self.lock:
            n = self.size(worker)
            return tuple(self.items.popleft() for _ in range(n))

    def join(self, *workers: Hashable) -> None:
        """More workers to hand frames to (Ray's actors, once up, beside the driver's lane)."""
        with self.lock:
            self.workers.extend(w for w in workers if w not in self.workers)

    def tell(self, worker: Hashable, frames: int, seconds: float) -> None:
        """A chunk of `worker` ran `frames` in `seconds` (its own time, from its start or the worker's previous
        frame to its last frame)."""
        if frames <= 0 or seconds < 0:
            return
        with self.lock:
            recent = self._recent.setdefault(worker, deque())
            recent.append((frames, seconds))
            while len(recent) > 1 and sum(t for _, t in recent) - recent[0][1] >= self.most_seconds:
                recent.popleft()  # what is left still covers `most_seconds`
            took = sum(t for _, t in recent)
            if took > 0:
                self.rate[worker] = sum(f for f, _ in recent) / took

    def leave(self, worker: Hashable, unfinished: Iterable[Item] = ()) -> None:
        """`worker` takes no more chunks; the frames it had and will not return are handed out first."""
        with self.lock:
            if worker in self.workers:
                self.workers.remove(worker)
            self.rate.pop(worker, None)
            self._recent.pop(worker, None)
            self.items.extendleft(reversed(list(unfinished)))


class ShardFill:
    """The shards of `tasks` filled by returned frames (a resumed shard starts with what its partial file holds);
    `add` gives a shard's frames, in order, once its last frame is back."""

    def __init__(self, tasks: Iterable[ShardTask]):
        tasks = list(tasks)
        self.shard_of = {i: t.index for t in tasks for i, _ in t.todo}
        self.want = {t.index: len(t.frames) for t in tasks}
        self.got: dict[int, list[FrameResult]] = {t.index: list(t.done) for t in tasks}

    def finished(self) -> list[tuple[int, list[FrameResult]]]:
        """Shards that need no frame at all (finished by their partial file): each once."""
        out = [(i, self._take(i)) for i, got in list(self.got.items()) if len(got) >= self.want[i]]
        return out

    def add(self, r: FrameResult) -> tuple[int, list[FrameResult]] | None:
        index = self.shard_of.pop(r.index)  # a frame comes back once (KeyError: a second time)
        got = self.got[index]
        got.append(r)
        return (index, self._take(index)) if len(got) >= self.want[index] else None

    def partial(self) -> list[tuple[int, list[FrameResult]]]:
        """The shards begun but not finished, with the frames they hold (for their partial files)."""
        return [(i, sorted(got, key=lambda r: r.index)) for i, got in self.got.items() if got]

    def _take(self, index: int) -> list[FrameResult]:
        return sorted(self.got.pop(index), key=lambda r: r.index)

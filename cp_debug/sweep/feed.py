"""One frame loop for many calls: the frames of a Ray actor's chunks as one stream (`FrameFeed`).

A worker's `run_frames(items)` reads frames ahead of the one running and judges each frame while the next one's
reference runs; begun again for every chunk, it loses both at each chunk's start and end (the first frame read
without overlap, the last one judged with the device idle) and the device waits while the chunk's results go back
to the driver. An actor instead runs one `run_frames` over a `FrameFeed` for its whole life and puts each chunk's
frames in as the chunk's call arrives (two are queued on an actor, so the next chunk's frames are in the feed
before the current one's end). Where the feed is empty it yields `FLUSH` first, then waits: the worker hands back
every frame it holds before it asks for the next item (the sweep plug-in's `run_frames` contract, sweep/__init__.py).
"""

from __future__ import annotations

import queue
from typing import Iterable, Iterator

FLUSH = ("flush",)  # "nothing more for now": every frame asked for so far is handed back before the next is asked for
_END = ("end",)


class FrameFeed:
    """(index, frame) items put in from any thread (`put`), read by one frame loop (iteration), `FLUSH` where none
    is waiting; `close` ends the iteration once what was put is read."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, items: Iterable) -> None:
        for item in items:
            self._queue.put(item)

    def close(self) -> None:
        self._queue.put(_END)

    def __iter__(self) -> Iterator:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                yield FLUSH
                item = self._queue.get()
            if item is _END:
                return
            yield item

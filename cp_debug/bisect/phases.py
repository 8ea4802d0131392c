"""Where a bisect's time went (issue 109): the command's wall by phase, in the report's settings (`phases`) and in
its summary, so that a user and a benchmark see what a run cost beside the model's own floor.

A phase is timed where it runs (`Phases.timed`); a phase timed inside another (a candidate's local errors inside its
stage run) is its own, its seconds taken out of the outer one's, so that the main thread's phases add up to the
command's wall less what is `other` (the report written, the CLI's own start). What a helper thread does beside the
main thread (a CUDA candidate's run beside the reference's, `ahead.py`) is a phase of its own whose name says
`beside`: it overlaps the main thread's and is not part of that sum.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

BESIDE = " (beside)"  # the name's suffix of a phase a helper thread ran beside the main thread's


class Phases:
    """Seconds by phase name, in the order the phases first began; safe to time from several threads."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._open = threading.local()  # this thread's phases open now, innermost last: [name, start, inner s]
        self._began = time.perf_counter()

    @contextmanager
    def timed(self, name: str, *, beside: bool = False) -> Iterator[None]:
        """Time the block as phase `name` (its inner phases' seconds taken out); `beside`: run on a helper thread
        beside the main thread's phases (the name gets `BESIDE`)."""
        stack = self._stack()
        entry = [name + (BESIDE if beside else ""), time.perf_counter(), 0.0]
        self.add(entry[0], 0.0)  # its place in the order: where it began
        stack.append(entry)
        try:
            yield
        finally:
            stack.pop()
            spent = time.perf_counter() - entry[1]
            if stack:
                stack[-1][2] += spent
            self.add(entry[0], spent - entry[2])

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._seconds[name] = self._seconds.get(name, 0.0) + max(0.0, seconds)

    def to_json(self) -> dict:
        """{phase: seconds} in the order they first began, then `other` (the wall since this object was made that
        no main-thread phase holds) and `total` (that wall)."""
        total = time.perf_counter() - self._began
        with self._lock:
            out = {k: round(v, 3) for k, v in self._seconds.items()}
        held = sum(v for k, v in out.items() if not k.endswith(BESIDE))
        out["other"] = round(max(0.0, total - held), 3)
        out["total"] = round(total, 3)
        return out

    def _stack(self) -> list:
        stack = getattr(self._open, "stack", None)
        if stack is None:
            stack = self._open.stack = []
        return stack


def phases_line(phases: dict | None) -> str | None:
    """`time 44.0 s: load 7.1 s · export 19.1 s · … · other 0.1 s` from the report's `settings.phases`, the
    main thread's phases in the order they began and those beside them after, by name (the same words in the same
    order for every run of one command: only the figures differ); None where the report has none."""
    if not phases or not phases.get("total"):
        return None
    parts = [(k, v) for k, v in phases.items() if k != "total"]
    parts = [kv for kv in parts if not kv[0].endswith(BESIDE)] + sorted(kv for kv in parts if kv[0].endswith(BESIDE))
    return f"time {phases['total']:.1f} s: " + " · ".join(f"{k} {v:.1f} s" for k, v in parts)

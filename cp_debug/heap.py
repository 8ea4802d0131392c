"""The cyclic garbage collector's policy for a process that holds torch, ONNX Runtime and a model for its life.

A `cpdebug` command, a Ray actor of a sweep and a resident server each hold millions of objects that live as long as
the process (modules, classes, functions, the model's). With Python's defaults every few thousand allocations a
collection walked them again, and each full one all of them: `collect_less` raises the first threshold, `settle`
moves what a warm-up loaded out of the collector's sight once it is loaded, and `uncollected` holds the collector
off a block that makes many objects and no cycles. `collect_less` is called by a command and a Ray actor; `settle`
freezes a server's warmed heap. Garbage is found the same way; frozen objects and tensors are
still freed by their reference counts.

`meminfo` reads what the host has (/proc/meminfo): the one reader of it for the reference store's budget, the
fit check of a model's weights and the server's kept sessions; `resident`, what this process holds (the server's
kept sessions' growth).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def collect_less() -> None:
    """A first threshold of 10,000 allocations instead of 700: garbage found the same way, a fourteenth as often. A
    tiny-preset bisect 6.63 → 6.25 CPU s (two runs each, the CPU machine)."""
    import gc

    gc.set_threshold(10_000, 10, 10)


@contextlib.contextmanager
def uncollected() -> Iterator[None]:
    """No cyclic collection while the block runs (the collector as it was after): for work that makes many objects
    holding no cycles, which reference counting frees. The devkit's evaluation of one class at 1000 frames makes 64k
    boxes: with the collector walking them every 700 allocations, making them took 0.55-0.82 s, without it 0.15 s
    (the CPU machine)."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def settle() -> None:
    """What was loaded so far (the warm-up's modules, the sessions and models built) moved out of the collector's
    sight (`gc.freeze`, after one last collection of its own garbage): each later collection, and a full one, walks
    only what was made after (0.13 s a full collection of a server's warmed heap on the CPU machine otherwise)."""
    import gc

    gc.collect()
    gc.freeze()


def meminfo(field: str) -> int | None:
    """/proc/meminfo's `field` ("MemAvailable", "MemTotal" …) in bytes; None where it cannot be read."""
    return _proc_bytes("/proc/meminfo", field)


def resident() -> int | None:
    """This process's resident bytes (/proc/self/status's VmRSS); None where it cannot be read."""
    return _proc_bytes("/proc/self/status", "VmRSS")


def _proc_bytes(path: str, field: str) -> int | None:
    """A "field:  N kB" line of a /proc file, in bytes."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None

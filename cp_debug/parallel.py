"""Threads for element-wise numpy work: numpy's ufuncs and ONNX Runtime's runs release the GIL, so a tensor's
blocks can be processed on several cores at once. A bisect of awml-base at `--level all` spent most of its time
in TensorDiff's float64 arithmetic on one core (H100 machine, torch-cuda,ort-cuda-fp16: 72 of 127 s); the
comparisons' numpy paths and the heat map (`compare/`) and large float16 casts (`cp_debug/half.py`) share this pool
(`run_parts`, `split`, `thread_count`).

`CPDEBUG_COMPARE_THREADS` sets the count (default: the cores this process may use, at most 8); 1 = serial.
Results do not depend on it beyond float64 summation order (parts are summed in a fixed order). Work handed out
from one of the pool's own threads runs serially in that thread (a worker waiting on its pool could deadlock it).

Torch work that a helper thread queues on a CUDA device goes on a stream of the helper's (`on_stream`), so that its
waits do not wait for what the main thread queues on the default stream meanwhile, nor the main thread for its work:
the bisect's helpers, the sweep's side lanes and fronts.

A warm-up on a helper thread (numba's kernels, Triton's first compile: `in_background`) is Python that holds the GIL
for long stretches, while the main thread loads the model with many short torch calls that each let the GIL go
and take it back: with CPython's default switch interval (5 ms) each such call waited up to 5 ms for the helper to
hand the GIL back (a trace of 108 small ops took 0.6-0.8 s instead of 0.03-0.05 s on the CPU machine, 2 cores). While
a helper runs, the interval is `_WARM_SWITCH_S`; the process's own comes back when the last one ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_PREFIX = "cpdebug-pool"
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
MAX_THREADS = 8  # past 8 parts the comparisons' blocks are too small to gain; a Ray actor is held to it too (given a
# host's 32 CPUs it split its comparisons 32 ways where the in-process sweep splits them 8)
_WARM_SWITCH_S = 0.0005  # the GIL switch interval while a warm-up runs on a helper thread (CPython's default: 5 ms)
_WARMING = 0  # helper threads of `in_background` running now
_SWITCH_LOCK = threading.Lock()
_SAVED_SWITCH: float | None = None


def thread_count() -> int:
    env = os.environ.get("CPDEBUG_COMPARE_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


def split(n: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """[lo, hi) ranges covering range(n) in `parts` pieces, boundaries on multiples of `align`."""
    step = -(-n // parts)
    step = -(-step // align) * align
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)] or [(0, 0)]


def run_parts(fn: Callable[[int, int], T], ranges: Sequence[tuple[int, int]]) -> list[T]:
    """fn(lo, hi) for each range, on the shared pool when there is more than one; results in range order."""
    if len(ranges) <= 1 or threading.current_thread().name.startswith(_PREFIX):
        return [fn(lo, hi) for lo, hi in ranges]
    pool = _pool(len(ranges))
    return list(pool.map(lambda r: fn(*r), ranges))


def _pool(n: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE < n:
        if _POOL is not None:
            _POOL.shutdown(wait=False)
        _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=n, thread_name_prefix=_PREFIX), n
    return _POOL


def in_background(target: Callable[[], object], name: str) -> threading.Thread:
    """`target()` on a daemon thread named `name` (started, returned for whoever wants to wait for it), with the GIL
    handed back to the main thread sooner while it runs (the module's docstring); what it raises ends it quietly."""

    def run() -> None:
        try:
            target()
        except Exception:  # noqa: BLE001 - a warm-up only: its caller says what goes wrong when it needs the thing
            pass
        finally:
            _warming(-1)

    _warming(+1)
    th = threading.Thread(target=run, name=name, daemon=True)
    try:
        th.start()
    except BaseException:
        _warming(-1)
        raise
    return th


def _warming(step: int) -> None:
    """Count a helper of `in_background` in (+1) or out (-1): the first sets the short switch interval, the last
    puts the process's own back."""
    import sys

    global _WARMING, _SAVED_SWITCH
    with _SWITCH_LOCK:
        if step > 0 and _WARMING == 0:
            _SAVED_SWITCH = sys.getswitchinterval()
            sys.setswitchinterval(min(_SAVED_SWITCH, _WARM_SWITCH_S))
        _WARMING += step
        if _WARMING == 0 and _SAVED_SWITCH is not None:
            sys.setswitchinterval(_SAVED_SWITCH)
            _SAVED_SWITCH = None


def on_stream(stream, fn: Callable[..., T], *args, after_default: bool = False) -> T:
    """`fn(*args)` with its torch work queued on CUDA `stream` (None: `fn(*args)` as it is), complete on return: an
    event recorded after it is waited for (other threads' work on the same stream is not). `after_default`: ordered
    after what is already queued on the device's default stream (values the caller's thread has made)."""
    if stream is None:
        return fn(*args)
    import torch

    if after_default:
        stream.wait_stream(torch.cuda.default_stream(stream.device))
    with torch.cuda.stream(stream):
        out = fn(*args)
        done = torch.cuda.Event()
        done.record(stream)
    done.synchronize()
    return out

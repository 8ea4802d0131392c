"""Threads for element-wise numpy work: numpy's ufuncs and ONNX Runtime's runs release the GIL, so a tensor's
blocks can be processed on several cores at once. A bisect of awml-base at `--level all` spent most of its time
in TensorDiff's float64 arithmetic on one core (H100 machine, torch-cuda,ort-cuda-fp16: 72 of 127 s); the
comparisons' numpy paths and the heat map (`compare/`) and large float16 casts (`cp_debug/half.py`) share this pool.

`CPDEBUG_COMPARE_THREADS` sets the count (default: the cores this process may use, at most 8); 1 = serial.
Results do not depend on it beyond float64 summation order (parts are summed in a fixed order). Work handed out
from one of the pool's own threads runs serially in that thread (a worker waiting on its pool could deadlock it).

Torch work that a helper thread queues on a CUDA device goes on a stream of the helper's (`on_stream`), so that its
waits do not wait for what the main thread queues on the default stream meanwhile, nor the main thread for its work.
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
MAX_THREADS = 8  # past 8 parts the comparisons' blocks are too small to gain (and a Ray actor given a host's 32 CPUs
# was 10% slower than the in-process sweep at 8, awml-base on an H100 host)


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

"""The CUDA driver started on a helper thread while the main thread goes on.

A command's first CUDA question used to be `torch.cuda.is_available()` (`backends.factory.check_available`, before
the model loads): the CUDA runtime's `cudaGetDeviceCount`, which starts the driver (`cuInit`: the device files
opened, the GPUs enumerated) on the main thread, 0.18-0.21 s on an H100 host, while torch's `device_count()` asks
NVML without starting it (0.018 s there). `check_available` now asks NVML, and `start` calls `cuInit` through ctypes
on a daemon thread (ctypes lets the GIL go for the call), so the driver starts while the main thread builds the
model on the CPU. `cuInit` creates no context and holds no GPU memory; a process that uses CUDA calls it anyway.

Not started while torch imports (tried: on the H100 host the import and `cuInit` slowed each other down, a bisect
0.1 s slower): `start` is called once torch is in. A helper thread's first torch CUDA call waits for the start
first (`wait`): torch's own `cudaGetDeviceCount`, made while `cuInit` runs on another thread, waits for it holding
the GIL, and the main thread with it.

The check itself imports no heavy library (issue 118, item 2: on an H200 host `import torch` and `import
onnxruntime` for the check took the first phase from 0.60 s, bare python, to 2.16 s): `visible_gpus` asks NVML
through ctypes (`nvmlDeviceGetCount`, no CUDA context, no driver start), within `CUDA_VISIBLE_DEVICES`; the
backends' own libraries are found on disk (`backends.factory.check_available`), and the driver starts once torch
is imported where it is used (`compare.device_warm.warm_up_in_background`, the first thing a bisect on CUDA does).

Here too: how a thread that waits on the device waits (`CPDEBUG_CUDA_SYNC`: `sync_mode`, `set_schedule`), set on the
primary contexts before the driver starts on its helper thread, in a Ray actor before it makes its context, and in
the server's warm-up.
"""

from __future__ import annotations

import os
import threading

_started: threading.Thread | None = None
_lock = threading.Lock()


def start() -> None:
    """`cuInit(0)` on a daemon thread, once a process (later calls do nothing), after `apply_sync` (where
    `CPDEBUG_CUDA_SYNC` is set, its cuInit runs on the calling thread). Raises only for a bad value of that
    (BadInputError): without a driver (no GPU, another system) the thread ends quietly and torch says what is
    missing when it is asked."""
    global _started
    with _lock:
        if _started is not None:
            return
        apply_sync()  # where asked for: set before any context, so on this thread (its cuInit too, ~0.2 s)
        _started = threading.Thread(target=_init, name="cpdebug-cuda-driver", daemon=True)
        _started.start()


def wait() -> None:
    """Return once the driver start of `start` is over (at once where none was started)."""
    th = _started
    if th is not None and th is not threading.current_thread():
        th.join()


def visible_gpus() -> int | None:
    """How many NVIDIA GPUs this process may use: NVML's count, within `CUDA_VISIBLE_DEVICES` (CUDA's reading: the
    entries up to the first that names no device; "" or "-1": none). None where NVML cannot be asked (no NVIDIA
    driver here, another system): the caller asks its library instead. Imports nothing heavy; never raises."""
    import ctypes

    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() != 0:
            return None
    except (OSError, AttributeError):
        return None
    count = ctypes.c_uint(0)
    try:
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
    finally:
        nvml.nvmlShutdown()
    return _within_visible(int(count.value), os.environ.get("CUDA_VISIBLE_DEVICES"))


def _within_visible(count: int, visible: str | None) -> int:
    """`count` GPUs on the host, of which `visible` (CUDA_VISIBLE_DEVICES; None: unset) lets the process see how
    many: indices below `count`, or GPU-/MIG- UUIDs, up to the first entry that is neither."""
    if visible is None:
        return count
    seen = 0
    for entry in visible.split(","):
        entry = entry.strip()
        if entry.isdigit() and int(entry) < count or entry.startswith(("GPU-", "MIG-")):
            seen += 1
        else:
            break
    return min(seen, count)


def _init() -> None:
    import contextlib
    import ctypes

    with contextlib.suppress(Exception):  # no libcuda here: torch says so when it is asked
        ctypes.CDLL("libcuda.so.1").cuInit(0)  # an error code stands for torch to find


SYNC_ENV = "CPDEBUG_CUDA_SYNC"
# CUDA's own names (cuda.h: CU_CTX_SCHED_*): how a thread that waits on the device waits
SCHEDULES = {"auto": 0x0, "spin": 0x1, "yield": 0x2, "blocking": 0x4}


def sync_mode() -> str | None:
    """`CPDEBUG_CUDA_SYNC` (auto, spin, yield, blocking), None where unset; a bad value is said in one line.

    How a thread that waits on the device waits, set on each visible device's primary context (the one torch and
    ONNX Runtime share) before either makes it (`set_schedule`). CUDA's own default ("auto") spins a core whenever a
    process has fewer contexts than the host has cores: a Ray actor sharing its card with three others under MPS
    waits longer on each synchronisation and spins all the while. Measured on 2 × H100 (32 cores; awml-base,
    `torch-cuda,ort-cuda-fp16 --level block`, 400 frames, four actors a card, `benchmarks/gpu_cuda_sync.sh`):
    "blocking" took the sweep's CPU from 331 to 141 s on one card and 355 to 181 s on two, and the frames/s once the
    sessions were open from 20.2 to 18.1 and 31.5 to 29.7 (the waiting thread wakes on the driver's interrupt):
    for a host whose CPUs are short, not the default. The reports the same."""
    from cp_debug.errors import BadInputError

    mode = os.environ.get(SYNC_ENV, "").strip().lower()
    if not mode:
        return None
    if mode not in SCHEDULES:
        raise BadInputError(f"{SYNC_ENV}={mode!r}: use one of {', '.join(SCHEDULES)} (how a thread waiting on the "
                            "GPU waits: CUDA's context scheduling), or unset it")
    return mode


_applied: str | None = None  # what `apply_sync` set in this process ("" where the driver refused it)


def apply_sync() -> str | None:
    """`sync_mode()`'s scheduling set once a process, for every backend on CUDA (`backends.factory.check_available`)
    and `start`: the mode set, None where unset or not set (no driver). A bad value raises (BadInputError)."""
    global _applied
    mode = sync_mode()
    if mode is None or _applied == mode:
        return mode
    _applied = mode if set_schedule(mode) else ""
    return _applied or None


def set_schedule(mode: str) -> bool:
    """`mode` (a key of SCHEDULES) set on every visible device's primary context (`cuDevicePrimaryCtxSetFlags_v2`,
    which overwrites the flags; a context made before keeps how it was made); False where a device refused or there
    is no driver, each device tried all the same. Never raises."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return False
    set_flags = getattr(cuda, "cuDevicePrimaryCtxSetFlags_v2", None) or cuda.cuDevicePrimaryCtxSetFlags
    done = True
    for i in range(count.value):
        dev = ctypes.c_int(0)
        if cuda.cuDeviceGet(ctypes.byref(dev), i) != 0 or set_flags(dev, ctypes.c_uint(SCHEDULES[mode])) != 0:
            done = False
    return done

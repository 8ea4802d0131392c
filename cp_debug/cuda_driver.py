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
"""

from __future__ import annotations

import threading

_started: threading.Thread | None = None
_lock = threading.Lock()


def start() -> None:
    """`cuInit(0)` on a daemon thread, once a process (later calls do nothing). Never raises: without a driver (no
    GPU, another system) the thread ends quietly and torch says what is missing when it is asked."""
    global _started
    with _lock:
        if _started is not None:
            return
        _started = threading.Thread(target=_init, name="cpdebug-cuda-driver", daemon=True)
        _started.start()


def wait() -> None:
    """Return once the driver start of `start` is over (at once where none was started)."""
    th = _started
    if th is not None and th is not threading.current_thread():
        th.join()


def _init() -> None:
    import contextlib
    import ctypes

    with contextlib.suppress(Exception):  # no libcuda here: torch says so when it is asked
        ctypes.CDLL("libcuda.so.1").cuInit(0)  # an error code stands for torch to find

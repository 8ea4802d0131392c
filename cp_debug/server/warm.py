"""Warming a server up: what every command loads (cp_debug's modules, the comparison kernels, ONNX Runtime; on a
GPU CUDA's context, ONNX Runtime's CUDA provider and the first Triton kernel), loaded once before it serves.

`CPDEBUG_SERVER_WARM_UP=off` leaves it out: the server serves with nothing loaded, each library loading with the first
command that needs it, as in a process of its own. For the tests whose claim is the server's start, signals, status
or idle end, not what it loaded (tests/cli/test_serve.py): the warm-up is 6-7 CPU s of every server they start. Such
a server has no torch thread count to put back after a command (`resident.Server`): a user's server, and the tests of
what a served command gives, warm up.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from cp_debug.heap import settle
from cp_debug.server import hold
from cp_debug.server.where import OFF

WARM_UP_ENV = "CPDEBUG_SERVER_WARM_UP"  # "off": no warm-up (see above)


def warm_up(say: Callable[[str], None]) -> None:
    """Load what every command loads: cp_debug's modules (torch, numba and scipy with them), the comparison
    kernels, ONNX Runtime, onnx, onnx-graphsurgeon, pandas, matplotlib; on a GPU, CUDA's context, ONNX Runtime's
    CUDA provider and the first Triton comparison kernel. What fails here is only logged: the command that needs it
    will say so itself."""
    if os.environ.get(WARM_UP_ENV, "").strip().lower() in OFF:
        say(f"warm-up: off ({WARM_UP_ENV}=off): each command loads what it needs")
        hold.at("imports", os.getpid())  # the start's phases come all the same (hold.py)
        return
    import importlib
    import pkgutil

    import cp_debug

    t0 = time.perf_counter()
    for mod in pkgutil.walk_packages(cp_debug.__path__, "cp_debug."):
        try:
            importlib.import_module(mod.name)
        except Exception as err:  # noqa: BLE001 - an optional extra missing: its command says so when asked
            say(f"warm-up: {mod.name} not loaded ({type(err).__name__}: {err})")
    hold.at("imports", os.getpid())
    for name in ("onnxruntime", "onnx", "onnx_graphsurgeon", "pandas", "matplotlib.colors", "rich.table",
                 "rich.live", "rich.progress"):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001
            say(f"warm-up: {name} not loaded ({type(err).__name__}: {err})")
    try:
        from cp_debug.compare import kernels

        kernels.warm_up()
    except Exception as err:  # noqa: BLE001
        say(f"warm-up: the comparison kernels not loaded ({type(err).__name__}: {err})")
    say(f"warm-up: modules and kernels loaded in {time.perf_counter() - t0:.2f} s")
    try:
        import torch

        if torch.cuda.is_available():
            t0 = time.perf_counter()
            _scheduling(say)
            torch.cuda.init()
            torch.zeros(1, device="cuda")
            from cp_debug.backends.ort.ort_warm import warm_up as ort_warm_up
            from cp_debug.determinism import Determinism

            for half in (True, False):  # its provider, cuDNN's convolutions (NHWC float16 and float32), cuBLAS
                ort_warm_up(Determinism().ort_cuda_provider_options(tf32=False, half=half), half)
            from cp_debug.compare.device_warm import warm_up as compare_warm_up

            compare_warm_up()
            say(f"warm-up: CUDA, ONNX Runtime's CUDA provider and the comparisons' kernels in "
                f"{time.perf_counter() - t0:.2f} s")
    except Exception as err:  # noqa: BLE001
        say(f"warm-up: the GPU part failed ({type(err).__name__}: {err})")
    settle()  # the warmed heap out of the collector's sight (heap.py): ~300,000 objects


def _scheduling(say: Callable[[str], None]) -> None:
    """CPDEBUG_CUDA_SYNC's scheduling, before the server makes its CUDA context (`where.FIXED_AT_START`: a caller
    with another value runs in its own process); a bad value said here, the rest of the warm-up going on."""
    from cp_debug.cuda_driver import apply_sync
    from cp_debug.errors import BadInputError

    try:
        apply_sync()
    except BadInputError as err:
        say(f"warm-up: {err}; CUDA's own scheduling kept")

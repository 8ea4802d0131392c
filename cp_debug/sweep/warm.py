"""What a sweep's first frame would otherwise wait for, loaded while its model is built: numba's comparison kernels
(~1 s of CPU where they are loaded from numba's cache) and the metrics tables' matching kernel (`eval/greedy.py`), and
on a CUDA lane the device's context, ONNX Runtime's CUDA provider (`backends/ort/ort_warm.py`) and the Triton comparison
kernel. In process (`warming`, beside the sessions) and in a Ray actor (`warm_up`, as the actor is made, before the
driver ships the export).

On the CPU machine an actor's warm-up for awml-base (`torch,ort-cpu-fp16`) took 1.52-1.54 s with the kernels loaded
after the subject, 1.19-1.23 s with them beside it (three fresh processes each, alternating).
"""

from __future__ import annotations

import threading

from cp_debug.sweep.records import SweepSettings


def warming(settings: SweepSettings) -> list[threading.Thread]:
    """The helpers started: numba's kernels, and ONNX Runtime's CUDA provider where a lane is an ONNX Runtime one on
    CUDA and a GPU is visible (`parallel.in_background` threads: never raising; whoever needs a kernel waits for it
    or loads it itself)."""
    from cp_debug.backends.ort.ort_warm import warm_up_in_background
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.compare import kernels
    from cp_debug.determinism import Determinism
    from cp_debug.parallel import in_background

    helpers = [kernels.warm_up_in_background(), in_background(_greedy_warm_up, "cpdebug-greedy-warm-up")]
    if _cuda(settings):
        specs = [BackendSpec.parse(b) for b in settings.backends]
        det = Determinism(enabled=settings.deterministic, seed=settings.seed, conv_algo=settings.cudnn_algo)
        helpers.append(warm_up_in_background(specs, det))
    return [h for h in helpers if h is not None]


def warm_up(settings: SweepSettings, marks: dict[str, float] | None = None):
    """An actor's warm-up: `warming`'s helpers beside the subject's build (its modules; its stages come from the
    driver), then on a CUDA lane the device's context and the Triton kernel; everything loaded on return. The
    subject is returned. `marks`: filled with when (time.time) each part was done — "subject", "cuda", "triton"
    (the helpers are joined after them: the return is the warm-up's end)."""
    import time

    marks = {} if marks is None else marks
    helpers = warming(settings)
    subject = settings.lanes().subject(settings)
    marks["subject"] = time.time()
    if _cuda(settings):
        import torch

        from cp_debug.compare.fused_diff import warm_up as triton_warm_up

        torch.zeros(1, device="cuda")
        marks["cuda"] = time.time()
        triton_warm_up()
        marks["triton"] = time.time()
    for helper in helpers:
        helper.join()
    return subject


def _greedy_warm_up() -> None:
    """The metrics tables' matching kernel (`eval/greedy.py`) compiled or read from numba's cache before the first
    frame's tables need it."""
    import numpy as np

    from cp_debug.eval.greedy import true_positives

    true_positives(np.zeros((1, 1)), np.ones(1))


def _cuda(settings: SweepSettings) -> bool:
    """A lane on CUDA (trt-* included) and a GPU torch sees."""
    if not settings.on_cuda():
        return False
    import torch

    return torch.cuda.is_available()

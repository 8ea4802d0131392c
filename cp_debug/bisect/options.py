"""The engine's options (`BisectOptions`), in a module of their own that imports nothing heavy: the command line and
the library build them while the request is checked, before numpy, onnx or torch is loaded (issue 118: a process
that starts at once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BisectOptions:
    level: str | None = None  # None: the subject's default
    refine: bool = True
    atol: float | None = None
    rtol: float | None = None
    deterministic: bool = True
    cudnn_algo: str | None = None  # Determinism.conv_algo: heuristic | default | exhaustive (None: by deterministic)
    noise_floor: bool = True
    local: bool = True
    calib_feeds: tuple = ()  # feeds of stage 0 for INT8 calibration; default: the run's own inputs
    keep_fp32: tuple[str, ...] = ()  # ONNX node names kept in FP32 by the FP16 transform
    exclude_int8: tuple[str, ...] = ()  # ONNX node names left out of INT8 quantisation
    max_refine_depth: int = 8
    memory_budget_mb: int | None = None  # None: store.default_budget(), a share of the available memory
    # the reference store's device tier (store.py): None: store.DEVICE_SHARE of the free GPU memory where the
    # reference runs on CUDA; 0: off (every probe on the host); > 0: that many MiB (a CPU reference: CPU tensors)
    device_budget_mb: int | None = None
    seed: int = 0
    lockstep: bool = True  # segment-by-segment execution where reference and candidate are both ONNX Runtime
    # how the lockstep runs: "segments" (a session per segment) or "grouped" (groups of consecutive segments whose
    # tensors fit 1 GiB, a session each: lockstep_grouped.py)
    lockstep_mode: str = "auto"
    # how probes are judged: "model" (against the candidate's precision's noise, compare/noise.py; three outcomes)
    # or "fixed" (element-wise atol/rtol, diverged or not, as before)
    tolerance_mode: str = "model"
    # an ONNX Runtime candidate on the device of the reference's probes runs each stage on helper threads while the
    # reference runs it (`ahead.py`: the same values); False: one after the other
    overlap: bool = True
    # a stage's screen for faults the outputs hide (`screen_ahead.py`) started as soon as its feeds are known, on a
    # helper thread beside the stage's runs: None where the candidate runs on CUDA (and `overlap`), True / False
    screen_ahead: bool | None = None
    # `--metric NAME|FILE.py:FUNC` (eval's, `samples/tasks.task_metric`): the application's decision on every output
    # by name; a value that changes is a flip (`findings/decisions.py`)
    metric: Any = None

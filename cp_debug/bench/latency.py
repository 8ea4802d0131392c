"""Per-stage latency of a recipe's staged pipeline, per backend: median and p90 over repeats after warm-up.

The rows are the recipe's (its `bench` plug-in, recipe_contract/recipe.PLUGINS): `STAGES`, a tuple of (row name, the
pipeline steps whose times are summed into it), in the order of a scan; the last row, "total", is every step's.

The step times are `run_pipeline`'s own (`PipelineResult.timings`). On CUDA backends the pipeline runs resident
(torch tensors on the GPU throughout, no host copy between the stages), `torch.cuda.synchronize()` brackets every
run and ends every step, so each step's time is its own GPU work. Peak GPU memory: torch's allocator peak
(torch runners and the glue) and the device's used memory above what it was before the backend was built
(this includes ONNX Runtime's CUDA arena).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class StageLatency:
    backend: str
    stage: str
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    repeats: int


@dataclass(frozen=True)
class BackendBench:
    backend: str
    spec: str
    rows: tuple[StageLatency, ...]
    boxes: int
    peak_torch_gpu_mb: float | None = None
    gpu_used_mb: float | None = None
    notes: tuple[str, ...] = ()

    def to_rows(self) -> list[dict]:
        extra = {"peak_torch_gpu_mb": self.peak_torch_gpu_mb, "gpu_used_mb": self.gpu_used_mb}
        return [{**asdict(r), "spec": self.spec, **extra} for r in self.rows]


def _row(backend: str, stage: str, seconds: Sequence[float]) -> StageLatency:
    ms = np.asarray(seconds, np.float64) * 1e3
    return StageLatency(backend, stage, float(np.median(ms)), float(np.percentile(ms, 90)), float(ms.mean()),
                        float(ms.min()), int(ms.size))


def _cuda_sync(on_cuda: bool) -> Callable[[], None]:
    if not on_cuda:
        return lambda: None
    import torch

    return torch.cuda.synchronize


def bench_backend(pipe, points: np.ndarray, *, stages: Sequence[tuple[str, tuple[str, ...]]], repeat: int,
                  warmup: int, on_run: Callable[[], None] | None = None) -> BackendBench:
    """Time `repeat` runs of an entered `BackendPipeline` on `points` after `warmup` untimed runs, a row per stage
    of `stages` (the recipe's bench plug-in's `STAGES`) and the total."""
    on_cuda = pipe.spec.device == "cuda" or str(pipe.glue_device).startswith("cuda")
    sync = _cuda_sync(on_cuda)
    torch = None
    if on_cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    per_step: dict[str, list[float]] = {name: [] for name, _ in stages}
    totals: list[float] = []
    used_peak = 0.0
    boxes = 0
    for i in range(warmup + repeat):
        sync()
        res = pipe.run(points)
        sync()
        if on_run:
            on_run()
        if torch is not None:
            free, total = torch.cuda.mem_get_info()
            used_peak = max(used_peak, (total - free) / 2**20)
        if i < warmup:
            continue
        boxes = len(res.detections)
        for name, steps in stages:
            per_step[name].append(sum(res.timings.get(s, 0.0) for s in steps))
        totals.append(sum(res.timings.values()))
    rows = [_row(pipe.label, name, per_step[name]) for name, _ in stages] + [_row(pipe.label, "total", totals)]
    peak = float(torch.cuda.max_memory_allocated() / 2**20) if torch is not None else None
    return BackendBench(pipe.label, str(pipe.spec), tuple(rows), boxes, peak, used_peak if torch is not None else None,
                        tuple(pipe.precision_notes()))


def baseline_gpu_used_mb() -> float | None:
    """Device memory in use now (MB), or None without CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


def table_rows(results: Sequence[BackendBench]) -> list[dict]:
    return [row for r in results for row in r.to_rows()]

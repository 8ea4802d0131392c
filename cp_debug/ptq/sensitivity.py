"""Which layers INT8 hurts: one layer quantized at a time, and the exclusion search (INT8's keep-FP32).

Every figure is measured, on held-out scenes, as the relative RMSE of the six head maps of the fake-quant
model against the BN-fused FP32 model (the same weights; fusing BN changes nothing but float rounding):
  rel_rmse(name) = ||y_int8 - y_fp32|| / ||y_fp32|| over all scenes; a run's score is its worst output.
Only the backbone/neck/head stage holds quantized layers, so the FP32 stage inputs are computed once.

The exclusion search drives `cp_debug.bisect.search.KeepFp32Search` (pure next()/tell()): its "keep" set is
the set of layers left in FP32, candidates ranked most sensitive first; every verdict is one real run. The
result is 1-minimal: putting any one of its layers back into INT8 fails the tolerance (each was run).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from cp_debug.errors import BadInputError


def rel_rmse(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    num = sum(float(((g.astype(np.float64) - r) ** 2).sum()) for r, g in zip(ref, got))
    den = sum(float((r.astype(np.float64) ** 2).sum()) for r in ref)
    return math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf)


class Evaluator:
    """Runs the fake-quant model's backbone/neck/head stage on fixed FP32 stage inputs with a chosen set of
    layers quantized, and scores the outputs against the FP32 model's."""

    def __init__(self, qmodel, fp32_model, spatial_inputs: Sequence):
        from cp_debug.models.centerpoint.model import HEAD_OUTPUTS
        from cp_debug.ptq.ptq import head_outputs

        if not spatial_inputs:
            raise BadInputError("sensitivity needs at least one held-out scene")
        self.qmodel = qmodel
        self.spatial = list(spatial_inputs)
        self.outputs = HEAD_OUTPUTS
        self.ref = [head_outputs(fp32_model, s) for s in self.spatial]
        self.runs = 0

    @property
    def layers(self) -> tuple[str, ...]:
        from cp_debug.quant.quantizers import quantized_layers

        return tuple(quantized_layers(self.qmodel))

    def errors(self, quantized: Sequence[str]) -> dict[str, float]:
        """rel. RMSE per head output with exactly `quantized` in INT8."""
        from cp_debug.ptq.ptq import head_outputs
        from cp_debug.quant.quantizers import only_enabled, set_enabled

        only_enabled(self.qmodel, quantized)
        try:
            got = [head_outputs(self.qmodel, s) for s in self.spatial]
        finally:
            set_enabled(self.qmodel, True)
        self.runs += 1
        return {n: rel_rmse([r[n] for r in self.ref], [g[n] for g in got]) for n in self.outputs}


def _worst(errs: dict[str, float]) -> tuple[str, float]:
    name = max(errs, key=lambda k: errs[k])
    return name, errs[name]


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    rel_rmse: float  # worst output
    worst_output: str
    heatmap: float
    reg: float
    per_output: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SensitivityResult:
    rows: tuple[LayerSensitivity, ...]  # most sensitive first
    all_int8: dict  # per-output rel. RMSE with every layer quantized
    scenes: int
    seconds: float

    def top(self, n: int = 10) -> list[LayerSensitivity]:
        return list(self.rows[:n])

    def to_frame(self):
        import pandas as pd

        rows = [{"rank": i, **{k: v for k, v in asdict(r).items() if k != "per_output"}, **r.per_output}
                for i, r in enumerate(self.rows, 1)]
        return pd.DataFrame(rows)

    def to_json(self) -> dict:
        return {"scenes": self.scenes, "seconds": self.seconds, "all_int8": self.all_int8,
                "rows": [asdict(r) for r in self.rows]}


def layer_sensitivity(ev: Evaluator, layers: Sequence[str] | None = None,
                      on_layer: Callable[[int, int, str], None] | None = None) -> SensitivityResult:
    """Quantize each layer alone (the rest FP32) and rank the layers by the worst output's rel. RMSE."""
    t0 = time.perf_counter()
    layers = tuple(layers) if layers is not None else ev.layers
    rows = []
    for i, name in enumerate(layers, 1):
        errs = ev.errors([name])
        out, worst = _worst(errs)
        rows.append(LayerSensitivity(name, worst, out, errs["heatmap"], errs["reg"], errs))
        if on_layer:
            on_layer(i, len(layers), name)
    all_int8 = ev.errors(ev.layers)
    rows.sort(key=lambda r: -r.rel_rmse)
    return SensitivityResult(tuple(rows), all_int8, len(ev.spatial), time.perf_counter() - t0)


@dataclass(frozen=True)
class ExclusionStep:
    fp32: tuple[str, ...]
    phase: str
    passed: bool
    rel_rmse: float
    worst_output: str


@dataclass(frozen=True)
class ExclusionResult:
    """status: "not_needed" (all-INT8 passes), "found" (`fp32` is 1-minimal), "impossible" (even every
    candidate in FP32 fails)."""

    status: str
    fp32: tuple[str, ...] | None
    tol: float
    candidates: tuple[str, ...]
    steps: tuple[ExclusionStep, ...]

    @property
    def runs(self) -> int:
        return len(self.steps)

    def skip_layers_option(self) -> str:
        return "--skip-layers " + ",".join(self.fp32 or ())

    def to_json(self) -> dict:
        return {"status": self.status, "fp32": list(self.fp32) if self.fp32 is not None else None,
                "tol": self.tol, "candidates": list(self.candidates), "steps": [asdict(s) for s in self.steps]}


def exclusion_search(ev: Evaluator, ranked: Sequence[str], tol: float,
                     on_step: Callable[[ExclusionStep], None] | None = None) -> ExclusionResult:
    """A 1-minimal set of layers to leave in FP32 so that the worst output's rel. RMSE is <= `tol`, every
    other quantized layer in INT8. `ranked`: candidates, most sensitive first."""
    from cp_debug.bisect.search import KeepFp32Search

    if not tol > 0:
        raise BadInputError(f"--tol must be positive, got {tol}")
    all_layers = ev.layers
    unknown = [n for n in ranked if n not in all_layers]
    if unknown:
        raise BadInputError(f"not quantized layers: {', '.join(unknown)}")
    search = KeepFp32Search(ranked)
    steps = []
    while not search.done:
        keep = tuple(search.next())
        errs = ev.errors([n for n in all_layers if n not in set(keep)])
        out, worst = _worst(errs)
        search.tell(worst > tol)  # bad = fails the tolerance
        step = ExclusionStep(keep, search.history[-1].phase, worst <= tol, worst, out)
        steps.append(step)
        if on_step:
            on_step(step)
    return ExclusionResult(search.status, search.result, tol, tuple(ranked), tuple(steps))

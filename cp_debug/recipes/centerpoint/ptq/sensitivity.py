"""Which layers INT8 hurts: one layer quantized at a time, and the exclusion search (INT8's keep-FP32).

Every figure is measured, on held-out scenes, as the relative RMSE of the six head maps of the fake-quant
model against the BN-fused FP32 model (the same weights; fusing BN changes nothing but float rounding):
  rel_rmse(name) = ||y_int8 - y_fp32|| / ||y_fp32|| over all scenes; a run's score is its worst output.
Only the backbone/neck/head stage holds quantized layers, so the FP32 stage inputs are computed once.

The exclusion search runs `cp_debug.bisect.cures.search.KeepFp32Search` on the one search driver (`run_search`): its
"keep" set is the set of layers left in FP32, candidates ranked most sensitive first; every verdict is one run. The
result is 1-minimal: putting any one of its layers back into INT8 fails the tolerance (each was run).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from cp_debug.bisect.cures.search import KeepFp32Search, TraceStep, Verdict, run_search
from cp_debug.compare.pooled import rel_rmse
from cp_debug.errors import BadInputError


class Evaluator:
    """Runs the fake-quant model's backbone/neck/head stage on fixed FP32 stage inputs with a chosen set of
    layers quantized, and scores the outputs against the FP32 model's."""

    def __init__(self, qmodel, fp32_model, spatial_inputs: Sequence, map_scenes=None, cfg=None):
        from cp_debug.models.centerpoint.model import HEAD_OUTPUTS
        from cp_debug.recipes.centerpoint.ptq.scenes import head_outputs

        if not spatial_inputs:
            raise BadInputError("sensitivity needs at least one held-out scene")
        self.qmodel = qmodel
        self.spatial = list(spatial_inputs)
        self.outputs = HEAD_OUTPUTS
        self.ref = [head_outputs(fp32_model, s) for s in self.spatial]
        self.runs = 0
        self.cfg, self.map_scenes = cfg, map_scenes  # map_eval.MapFrames: mAP judged on these
        self.fp32_map = None
        if map_scenes is not None:
            from cp_debug.recipes.centerpoint.ptq.map_eval import mean_ap, torch_heads

            self.fp32_map = mean_ap(cfg, map_scenes, torch_heads(fp32_model, map_scenes)).mean_ap

    def map_drop(self, quantized: Sequence[str]) -> float:
        """FP32 mAP minus the mAP with exactly `quantized` in INT8 (on the mAP scenes)."""
        from cp_debug.recipes.centerpoint.ptq.map_eval import mean_ap, torch_heads
        from cp_debug.quant.quantizers import only_quantized

        if self.map_scenes is None:
            raise BadInputError("mAP needs held-out scenes with ground truth (map_scenes)")
        with only_quantized(self.qmodel, quantized):
            heads = torch_heads(self.qmodel, self.map_scenes)
        return self.fp32_map - mean_ap(self.cfg, self.map_scenes, heads).mean_ap

    @property
    def layers(self) -> tuple[str, ...]:
        from cp_debug.quant.quantizers import quantized_layers

        return tuple(quantized_layers(self.qmodel))

    def chosen_layers(self, names: str | None) -> list[str]:
        """The quantized layers of a comma-separated list (`--layers`); every layer when None."""
        chosen = [n.strip() for n in names.split(",") if n.strip()] if names else list(self.layers)
        unknown = [n for n in chosen if n not in self.layers]
        if unknown:
            raise BadInputError(f"--layers names no quantized layer: {', '.join(unknown)} (quantized: "
                                f"{', '.join(self.layers[:3])}, ...)")
        return chosen

    def errors(self, quantized: Sequence[str]) -> dict[str, float]:
        """rel. RMSE per head output with exactly `quantized` in INT8."""
        from cp_debug.recipes.centerpoint.ptq.scenes import head_outputs
        from cp_debug.quant.quantizers import only_quantized

        with only_quantized(self.qmodel, quantized):
            got = [head_outputs(self.qmodel, s) for s in self.spatial]
        self.runs += 1
        return {n: rel_rmse([r[n] for r in self.ref], [g[n] for g in got]) for n in self.outputs}


def held_out_evaluator(run, cfg, eval_scenes: int, map_scenes: int = 0) -> Evaluator:
    """The Evaluator of a PTQ run (`ptq.quantize.PtqRun`) on `eval_scenes` held-out scenes, with mAP judged on
    `map_scenes` held-out scenes with ground truth (0: no mAP)."""
    from cp_debug.data.frames import held_out, points_of
    from cp_debug.recipes.centerpoint.ptq.scenes import stage_inputs

    spatial = [stage_inputs(run.fused_fp32, cfg, p)[1] for p in points_of(held_out(eval_scenes), cfg)]
    scenes = None
    if map_scenes:
        from cp_debug.recipes.centerpoint.ptq.map_eval import map_scenes as held_out_with_gt

        scenes = held_out_with_gt(cfg, run.fused_fp32, map_scenes)
    return Evaluator(run.model, run.fused_fp32, spatial, scenes, cfg)


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
    map_drop: float | None = None  # FP32 mAP minus this layer-alone INT8 mAP, where mAP scenes were given


@dataclass(frozen=True)
class SensitivityResult:
    rows: tuple[LayerSensitivity, ...]  # most sensitive first
    all_int8: dict  # per-output rel. RMSE with every layer quantized
    scenes: int
    seconds: float
    fp32_map: float | None = None
    all_int8_map_drop: float | None = None

    def top(self, n: int = 10) -> list[LayerSensitivity]:
        return list(self.rows[:n])

    def to_frame(self):
        import pandas as pd

        rows = [{"rank": i, **{k: v for k, v in asdict(r).items() if k != "per_output"}, **r.per_output}
                for i, r in enumerate(self.rows, 1)]
        return pd.DataFrame(rows)

    def to_json(self) -> dict:
        return {"scenes": self.scenes, "seconds": self.seconds, "all_int8": self.all_int8,
                "fp32_map": self.fp32_map, "all_int8_map_drop": self.all_int8_map_drop,
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
        drop = ev.map_drop([name]) if ev.map_scenes is not None else None
        rows.append(LayerSensitivity(name, worst, out, errs["heatmap"], errs["reg"], errs, drop))
        if on_layer:
            on_layer(i, len(layers), name)
    all_int8 = ev.errors(ev.layers)
    all_drop = ev.map_drop(ev.layers) if ev.map_scenes is not None else None
    rows.sort(key=lambda r: -r.rel_rmse)
    return SensitivityResult(tuple(rows), all_int8, len(ev.spatial), time.perf_counter() - t0, ev.fp32_map, all_drop)


@dataclass(frozen=True)
class ExclusionFigures:
    """What the exclusion judge measured in one run (a `TraceStep`'s figures): the worst output's rel. RMSE, its
    name, the mAP drop (None unless judged on mAP)."""

    rel_rmse: float
    worst_output: str
    map_drop: float | None


def step_json(s: TraceStep) -> dict:
    """One step of the exclusion search as its JSON lists it: the layers left in FP32, the verdict, the figures."""
    f = s.figures
    return {"fp32": s.experiment, "phase": s.phase, "passed": s.passed, "rel_rmse": f.rel_rmse,
            "worst_output": f.worst_output, "map_drop": f.map_drop}


@dataclass(frozen=True)
class ExclusionResult:
    """status: "not_needed" (all-INT8 passes), "found" (`fp32` is 1-minimal), "impossible" (even every
    candidate in FP32 fails)."""

    status: str
    fp32: tuple[str, ...] | None
    tol: float | None
    candidates: tuple[str, ...]
    steps: tuple[TraceStep, ...]  # every run, in order; figures: ExclusionFigures

    @property
    def runs(self) -> int:
        return len(self.steps)

    def exclude_int8_option(self) -> str:
        """The set found as `cpdebug quantize`'s option that leaves it out of INT8."""
        return "--exclude-int8 " + ",".join(self.fp32 or ())

    max_map_drop: float | None = None

    def to_json(self) -> dict:
        return {"status": self.status, "fp32": list(self.fp32) if self.fp32 is not None else None,
                "tol": self.tol, "max_map_drop": self.max_map_drop, "candidates": list(self.candidates),
                "steps": [step_json(s) for s in self.steps]}


def exclusion_search(ev: Evaluator, ranked: Sequence[str], tol: float | None = None,
                     on_step: Callable[[TraceStep], None] | None = None,
                     max_map_drop: float | None = None) -> ExclusionResult:
    """A 1-minimal set of layers to leave in FP32 so that the worst output's rel. RMSE is <= `tol` (or, with
    `max_map_drop`, the mAP drop vs FP32 is <= it; both when both are given), every other quantized layer in
    INT8. `ranked`: candidates, most sensitive first."""
    if tol is None and max_map_drop is None:
        raise BadInputError("give a target (--max-rel-rmse) or a maximum mAP drop (--max-map-drop)")
    if tol is not None and not tol > 0:
        raise BadInputError(f"--max-rel-rmse must be positive, got {tol}")
    if max_map_drop is not None and ev.map_scenes is None:
        raise BadInputError("--max-map-drop needs held-out scenes with ground truth for mAP")
    all_layers = ev.layers
    unknown = [n for n in ranked if n not in all_layers]
    if unknown:
        raise BadInputError(f"not quantized layers: {', '.join(unknown)}")

    def judge(keep: list[str]) -> Verdict:
        kept = set(keep)
        quantized = [n for n in all_layers if n not in kept]
        out, worst = _worst(ev.errors(quantized))
        drop = ev.map_drop(quantized) if max_map_drop is not None else None
        passed = (tol is None or worst <= tol) and (drop is None or drop <= max_map_drop)
        return Verdict(not passed, ExclusionFigures(worst, out, drop))  # bad = fails

    trace = run_search(KeepFp32Search(ranked), judge, on_step)
    return ExclusionResult(trace.status, trace.result, tol, tuple(ranked), trace.steps, max_map_drop)

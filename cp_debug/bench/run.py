"""`cpdebug bench`'s work: one scan, each backend built once, warmed up, then timed stage by stage."""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager

from cp_debug.backends.spec import BackendSpec
from cp_debug.bench.latency import BackendBench, baseline_gpu_used_mb, bench_backend
from cp_debug.determinism import Determinism

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe


@dataclass(frozen=True)
class BenchOptions:
    backends: tuple[tuple[str, BackendSpec], ...]  # (label as typed, spec)
    preset: str = "demo"
    checkpoint: Path | None = None
    random_weights: bool = False
    seed: int = 0
    points: Path | None = None
    repeat: int = 20
    warmup: int = 3
    deterministic: bool = True
    calib_scenes: int = 2
    cudnn_algo: str | None = None  # Determinism.conv_algo
    recipe: "Recipe" = field(kw_only=True)  # whose pipeline is timed (its `bench` plug-in's rows)


@dataclass(frozen=True)
class BenchReport:
    preset: str
    weights: str
    scan: str
    num_points: int
    repeat: int
    warmup: int
    results: tuple[BackendBench, ...]

    def to_json(self) -> dict:
        from cp_debug.bench.latency import table_rows

        return {"preset": self.preset, "weights": self.weights, "scan": self.scan, "num_points": self.num_points,
                "repeat": self.repeat, "warmup": self.warmup, "rows": table_rows(self.results),
                "notes": {r.backend: list(r.notes) for r in self.results}}


def run_bench(opts: BenchOptions, progress: Callable[[str, int], ContextManager] | None = None,
              step: Callable[[str], ContextManager] | None = None) -> BenchReport:
    from cp_debug.backends.factory import check_available
    from cp_debug.data.frames import Frame, PointFile, calibration, held_out, points_of
    from cp_debug.eval.session import load_weights

    step = step or (lambda text: contextlib.nullcontext())
    specs = dict(opts.backends)
    for spec in specs.values():
        check_available(spec)
    cfg = opts.recipe.config(opts.preset)
    plug = opts.recipe.plugin("bench")
    stages = plug.STAGES
    if opts.points is not None:
        points, scan = Frame(str(opts.points), PointFile(str(opts.points))).load(cfg).points, str(opts.points)
    else:
        with step("generating a held-out synthetic scene"):
            frame = held_out(1)[0]
            points = frame.load(cfg).points
        scan = f"held-out synthetic scene {frame.token}"
    with step("loading weights"):
        loaded = load_weights(opts.preset, opts.checkpoint, opts.random_weights, opts.seed, opts.recipe)
    det = Determinism(enabled=opts.deterministic, seed=opts.seed, conv_algo=opts.cudnn_algo)
    results = []
    with tempfile.TemporaryDirectory(prefix="cpdebug-bench-") as tmp:
        onnx_dir = None
        if any(s.runs_onnx for s in specs.values()):
            with step("exporting the two ONNX stages"):
                onnx_dir = Path(tmp)
                opts.recipe.export_files(loaded, onnx_dir, sample_points=points)
        calib = None
        if any(s.precision == "int8" for s in specs.values()):
            with step(f"INT8 calibration feeds from {opts.calib_scenes} held-out scenes"):
                calib_frames = calibration(cfg, max(1, opts.calib_scenes), held_out_seeds=True)
                calib = plug.int8_calibration(cfg, loaded.model, points_of(calib_frames, cfg))
        for label, spec in specs.items():
            base = baseline_gpu_used_mb() if spec.device == "cuda" else None
            pipe = plug.BackendPipeline(label, spec, cfg, loaded.model, onnx_dir=onnx_dir, determinism=det, calib=calib,
                                   glue_device=spec.device)
            with step(f"{label}: building runners"):
                pipe.__enter__()
            try:
                bar = progress(label, opts.warmup + opts.repeat) if progress else contextlib.nullcontext(None)
                with bar as advance:
                    res = bench_backend(pipe, points, stages=stages, repeat=opts.repeat, warmup=opts.warmup,
                                        on_run=advance if advance else None)
            finally:
                pipe.__exit__(None, None, None)
            if base is not None and res.gpu_used_mb is not None:
                res = replace(res, gpu_used_mb=max(0.0, res.gpu_used_mb - base))
            results.append(res)
    return BenchReport(cfg.name, loaded.weights, scan, int(len(points)), opts.repeat, opts.warmup, tuple(results))

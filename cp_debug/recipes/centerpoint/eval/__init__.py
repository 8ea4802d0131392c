"""CenterPoint's part of `cpdebug eval` (its `eval` plug-in, recipe_contract/recipe.PLUGINS): its frames run on its own
staged pipeline, not through a `FrameModel` — each backend's two stage runners and the pair's glue
(`backend_pipeline.py`), the two ONNX stages exported once for the ONNX backends and INT8 calibrated per stage where
one needs it. `eval/session.py` calls `run_backends` (the hook `eval/__init__.py` describes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager

from cp_debug.backends.spec import Capability
from cp_debug.determinism import Determinism
from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.eval.session import EvalOptions, ProgressFactory


def run_backends(opts: "EvalOptions", specs: dict, cfg, loaded, scenes: list, progress: "ProgressFactory",
                 step: Callable[[str], ContextManager]) -> tuple[dict, dict, dict, bool]:
    """Run every backend of `specs` on the scenes (the two ONNX stages exported and INT8 calibrated where one needs
    it): their detections, seconds and notes by label, and whether INT8 calibration feeds were made (the hook of
    `eval/__init__.py`)."""
    from cp_debug.data.frames import calibration, points_of
    from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline, int8_calibration, run_backend

    tokens = [s.token for s in scenes]
    det = Determinism(enabled=opts.deterministic, seed=opts.seed, conv_algo=opts.cudnn_algo)
    detections, seconds, notes = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="cpdebug-eval-") as tmp:
        onnx_dir = None
        if any(s.runs_onnx for s in specs.values()):
            from cp_debug.recipes.centerpoint.export import export_onnx

            with step("exporting the two ONNX stages"):
                onnx_dir = Path(tmp)
                export_onnx(loaded.model, cfg, onnx_dir, sample_points=scenes[0].load(cfg).points)
        calib = None
        if opts.int8_dir is not None:
            from cp_debug.recipes.centerpoint.ptq_checkpoint import read_ptq_dir

            ptq = read_ptq_dir(opts.int8_dir)
            if ptq.preset != cfg.name:
                raise BadInputError(f"--int8 {opts.int8_dir} was quantized for preset {ptq.preset!r}: pass "
                                    f"--preset {ptq.preset}")
        if any(s.precision == "int8" and (opts.int8_dir is None or not s.can(Capability.PTQ_MODEL))
               for s in specs.values()):
            if opts.calib_scenes < 1:
                raise BadInputError("INT8 backends need --calib-n >= 1")
            with step(f"INT8 calibration feeds from {opts.calib_scenes} held-out scenes not evaluated"):
                frames = calibration(cfg, opts.calib_scenes, held_out_seeds=True, exclude=tokens)
                calib = int8_calibration(cfg, loaded.model, points_of(frames, cfg))
        for label, spec in specs.items():
            pipe = BackendPipeline(label, spec, cfg, loaded.model, onnx_dir=onnx_dir, determinism=det, calib=calib,
                                   int8_dir=opts.int8_dir if spec.can(Capability.PTQ_MODEL) else None)
            with step(f"{label}: building runners"):
                pipe.__enter__()
            try:
                with progress(label, len(scenes)) as advance:
                    run = run_backend(pipe, scenes, on_scene=lambda i: advance())
            finally:
                pipe.__exit__(None, None, None)
            detections[label], seconds[label], notes[label] = run.detections, run.seconds, run.notes
    return detections, seconds, notes, bool(calib)

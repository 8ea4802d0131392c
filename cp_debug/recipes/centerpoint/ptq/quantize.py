"""Post-training quantization of a CenterPoint, as AWML does it: fuse BN, insert quantizers, calibrate.

`PtqSettings.parse` checks the options `cpdebug quantize` and `cpdebug sensitivity` share before anything is
loaded; `calibrate_model` is their common first step (load the model, calibrate it over the calibration scenes
of `data.frames.calibration`); `quantize_centerpoint` does the work on a built model.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.recipes.centerpoint.ptq.scenes import stage_inputs

if TYPE_CHECKING:
    from cp_debug.models.centerpoint.source import LoadedModel
    from cp_debug.lidar.record import ModelRecord

# AWML's skip list: the neck's deblocks (deblocks.2.0 is a ConvTranspose2d; TensorRT has no INT8 kernel for it).
DEFAULT_SKIP = ("pts_neck.deblocks.0.0", "pts_neck.deblocks.1.0", "pts_neck.deblocks.2.0")
# AWML's variant with ConvTranspose quantized (per-tensor weights): the first backbone block stays FP32.
CONVT_VARIANT_SKIP = ("pts_backbone.blocks.0",)
QUANT_SCOPE = ("pts_backbone", "pts_neck", "pts_bbox_head")  # pts_voxel_encoder is never quantized


def default_skip(convtranspose: str) -> tuple[str, ...]:
    return DEFAULT_SKIP if convtranspose == "skip" else CONVT_VARIANT_SKIP


@dataclass(frozen=True)
class PtqSettings:
    """How to quantize, checked: amax method, percentile, ConvTranspose mode and the layers left in FP32."""

    method: str = "mse"
    percentile: float = 99.99
    convtranspose: str = "skip"
    extra_skip: tuple[str, ...] = ()

    @property
    def skip(self) -> tuple[str, ...]:
        return tuple(default_skip(self.convtranspose)) + self.extra_skip

    @classmethod
    def parse(cls, method: str, percentile: float, skip_layers: str | None, convtranspose: str) -> "PtqSettings":
        """The settings of the command-line values; a BadInputError names the wrong one."""
        from cp_debug.quant.calibrate import METHODS
        from cp_debug.quant.quantizers import CONVTRANSPOSE_MODES

        if method not in METHODS:
            raise BadInputError(f"unknown --method {method!r}: choose one of {', '.join(METHODS)}")
        if convtranspose not in CONVTRANSPOSE_MODES:
            raise BadInputError(f"unknown --convtranspose {convtranspose!r}: choose {', '.join(CONVTRANSPOSE_MODES)}")
        extra = tuple(s.strip() for s in (skip_layers or "").split(",") if s.strip())
        return cls(method, percentile, convtranspose, extra)


@dataclass(frozen=True)
class PtqRun:
    """A calibrated fake-quant CenterPoint (`model`), the BN-fused FP32 model it came from, what was quantized."""

    model: object
    fused_fp32: object
    plan: object  # QuantPlan
    method: str
    scenes: int
    bn_pairs: int
    seconds: float


def quantize_centerpoint(model, cfg, points: Iterator[np.ndarray], n_scenes: int, *, method: str = "mse",
                         percentile: float = 99.99, skip: Sequence[str] | None = None,
                         convtranspose: str = "skip",
                         on_scene: Callable[[int, int], None] | None = None) -> PtqRun:
    """Fuse BN (by data flow), quantize (per-channel weights, per-tensor inputs; `skip` + ConvTranspose per
    `convtranspose` left FP32) and calibrate on `points` (n_scenes scans). `model` is not changed."""
    import copy

    from cp_debug.models.centerpoint.model import BackboneNeckHeadStage
    from cp_debug.recipes.centerpoint.ptq_checkpoint import fuse_centerpoint
    from cp_debug.quant.calibrate import calibrate
    from cp_debug.quant.quantizers import insert_quantizers, plan_quantization

    t0 = time.perf_counter()
    fused, pairs = fuse_centerpoint(model)
    skip = default_skip(convtranspose) if skip is None else tuple(skip)
    plan = plan_quantization(fused, skip, convtranspose, scope=QUANT_SCOPE)
    if not plan.layers:
        raise BadInputError("every layer is skipped: nothing to quantize (check --exclude-int8)")
    qmodel = insert_quantizers(copy.deepcopy(fused), plan).eval()

    def loop(m) -> int:
        stage = BackboneNeckHeadStage(m)
        done = 0
        for pts in points:
            _, spatial = stage_inputs(m, cfg, pts)
            stage(spatial)
            done += 1
            if on_scene:
                on_scene(done, n_scenes)
        return done

    cal = calibrate(qmodel, loop, method, percentile)
    return PtqRun(qmodel, fused, plan, method, cal.batches, len(pairs), time.perf_counter() - t0)


@dataclass(frozen=True)
class CalibratedModel:
    """The loaded model, its PTQ run and the calibration scenes in words."""

    loaded: LoadedModel
    run: PtqRun
    calibration: str

    def summary(self) -> str:
        run = self.run
        return (f"weights: {self.loaded.weights}; BN fused ({run.bn_pairs} pairs), {len(run.plan.layers)} layers "
                f"calibrated on {self.calibration} ({run.seconds:.1f} s)")


def _no_bar(text: str, total: int):
    return contextlib.nullcontext(lambda n=1, **fields: None)


def calibrate_model(model: ModelRecord, settings: PtqSettings, calib_scenes: str | Path | None,
                    calib_n: int | None, *, step: Callable[[str], ContextManager] | None = None,
                    bar: Callable[[str, int], ContextManager] = _no_bar) -> CalibratedModel:
    """Load `model` and run PTQ over the calibration scenes (an info file, or `calib_n` synthetic ones).
    `step(text)`: a context per long step; `bar(text, total)`: a progress bar yielding `advance()`."""
    from cp_debug.data.frames import calibration, points_of

    step = step or (lambda text: contextlib.nullcontext())
    from cp_debug.recipes.catalog import recipe

    with step(f"building {model.preset}"):
        loaded = recipe().load_model(model)
    frames = calibration(loaded.cfg, calib_n, infos=calib_scenes)
    n = len(frames)
    with bar(f"calibrating ({settings.method})", n) as advance:
        run = quantize_centerpoint(loaded.model, loaded.cfg, points_of(frames, loaded.cfg), n, method=settings.method,
                                   percentile=settings.percentile, skip=settings.skip,
                                   convtranspose=settings.convtranspose, on_scene=lambda done, total: advance())
    return CalibratedModel(loaded, run, calibration_text(n, calib_scenes))


def calibration_text(n: int, calib_scenes: str | Path | None) -> str:
    """What PTQ calibrated on, for the summary and quantization.json."""
    if calib_scenes is not None:
        return f"{n} scene(s) of {calib_scenes}"
    return f"{n} synthetic training scene(s) (seeds 0..{n - 1})"

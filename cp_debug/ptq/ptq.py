"""Post-training quantization of a CenterPoint, as AWML does it: fuse BN, insert quantizers, calibrate.

The scenes run through the staged pipeline exactly as `recipes/centerpoint/pipeline.py` does (voxelize ->
decorated features -> voxel encoder -> scatter -> backbone/neck/head), so every quantizer sees the inputs the
deployed stage would. Calibration scenes come from an info file (`--calib-scenes DIR`, read by
`cp_debug.data.infos.read_infos`) or are synthesized (training seeds, never the held-out ones).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from cp_debug.errors import BadInputError

# AWML's skip list: the neck's deblocks (deblocks.2.0 is a ConvTranspose2d; TensorRT has no INT8 kernel for it).
DEFAULT_SKIP = ("pts_neck.deblocks.0.0", "pts_neck.deblocks.1.0", "pts_neck.deblocks.2.0")
# AWML's variant with ConvTranspose quantized (per-tensor weights): the first backbone block stays FP32.
CONVT_VARIANT_SKIP = ("pts_backbone.blocks.0",)
QUANT_SCOPE = ("pts_backbone", "pts_neck", "pts_bbox_head")  # pts_voxel_encoder is never quantized


def default_skip(convtranspose: str) -> tuple[str, ...]:
    return DEFAULT_SKIP if convtranspose == "skip" else CONVT_VARIANT_SKIP


# -- scenes ----------------------------------------------------------------------------------------------------
def synthetic_points(cfg, seeds: Sequence[int]) -> Iterator[np.ndarray]:
    """Points of the synthetic scenes of `seeds` (cp_debug.data.scenes where present, else the simple scan)."""
    try:
        from cp_debug.data.scenes import make_scene
    except ImportError:  # pragma: no cover - the scene generator is not in this checkout
        make_scene = None
    from cp_debug.models.centerpoint.synthetic import synthetic_scene

    for s in seeds:
        yield (make_scene(cfg, int(s)) if make_scene else synthetic_scene(int(s), cfg)).points


def info_points(cfg, path: str | Path, n: int | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """(number of scenes, points iterator) of the samples of an info file or DIR/infos.pkl."""
    from cp_debug.data.infos import read_infos
    from cp_debug.models.centerpoint.points import load_points

    samples = read_infos(path, class_names=cfg.class_names)
    if not samples:
        raise BadInputError(f"{path} lists no sample to calibrate on")
    samples = samples[:n] if n else samples
    return len(samples), (load_points(s.lidar_path, cfg) for s in samples)


def calibration_points(cfg, scenes_dir: str | Path | None, n: int | None) -> tuple[int, Iterator[np.ndarray], str]:
    """(count, points iterator, description) of the calibration scenes: the samples of an info file
    (the first n when n is given) or n synthetic training scenes."""
    if scenes_dir is not None:
        count, it = info_points(cfg, scenes_dir, n)
        return count, it, f"{count} scene(s) of {scenes_dir}"
    n = 100 if n is None else int(n)
    if n < 1:
        raise BadInputError(f"--calib-n must be at least 1, got {n}")
    return n, synthetic_points(cfg, range(n)), f"{n} synthetic training scene(s) (seeds 0..{n - 1})"


def heldout_points(cfg, n: int) -> list[np.ndarray]:
    """Points of the first n held-out scenes (the seeds evaluation uses; never calibration's)."""
    try:
        from cp_debug.data.scenes import heldout_seeds
    except ImportError:  # pragma: no cover
        return list(synthetic_points(cfg, range(10_000, 10_000 + n)))
    return list(synthetic_points(cfg, heldout_seeds(n)))


# -- stage inputs ----------------------------------------------------------------------------------------------
def stage_inputs(model, cfg, points: np.ndarray):
    """(input_features, spatial_features) torch tensors of one scan, run through the torch glue and `model`'s
    voxel encoder as the staged pipeline does."""
    from cp_debug.recipes.centerpoint.export import example_stage_inputs

    return example_stage_inputs(model, cfg, points)


def head_outputs(model, spatial) -> dict[str, np.ndarray]:
    """The six raw head maps of `model`'s backbone/neck/head stage on `spatial` (float64 numpy)."""
    import torch

    from cp_debug.models.centerpoint.model import HEAD_OUTPUTS, BackboneNeckHeadStage

    with torch.no_grad():
        outs = BackboneNeckHeadStage(model)(spatial)
    return {n: o.detach().cpu().numpy() for n, o in zip(HEAD_OUTPUTS, outs)}


# -- the whole PTQ ---------------------------------------------------------------------------------------------
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
    from cp_debug.quant.bn_fusion import fuse_centerpoint
    from cp_debug.quant.calibrate import calibrate
    from cp_debug.quant.quantizers import insert_quantizers, plan_quantization

    t0 = time.perf_counter()
    fused, pairs = fuse_centerpoint(model)
    skip = default_skip(convtranspose) if skip is None else tuple(skip)
    plan = plan_quantization(fused, skip, convtranspose, scope=QUANT_SCOPE)
    if not plan.layers:
        raise BadInputError("every layer is skipped: nothing to quantize (check --skip-layers)")
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

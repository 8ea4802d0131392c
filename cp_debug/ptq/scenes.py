"""The scans PTQ runs on and the stage tensors of each: calibration scenes, held-out scenes, stage inputs, head maps.

The scenes run through the staged pipeline exactly as `recipes/centerpoint/pipeline.py` does (voxelize ->
decorated features -> voxel encoder -> scatter -> backbone/neck/head), so every quantizer sees the inputs the
deployed stage would. Calibration scenes come from an info file (`--calib-scenes DIR`, read by
`cp_debug.data.infos.read_infos`) or are synthesized (training seeds, never the held-out ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from cp_debug.errors import BadInputError


def synthetic_points(cfg, seeds: Sequence[int]) -> Iterator[np.ndarray]:
    """Points of the synthetic scenes of `seeds` (cp_debug.data.scenes)."""
    from cp_debug.data.scenes import make_scene

    for s in seeds:
        yield make_scene(cfg, int(s)).points


def info_points(cfg, path: str | Path, n: int | None = None) -> tuple[int, Iterator[np.ndarray]]:
    """(number of scenes, points iterator) of the samples of an info file or DIR/infos.pkl (each with its first
    `cfg.sweeps_num` sweeps, as the test pipeline reads it)."""
    from cp_debug.data.infos import read_infos
    from cp_debug.data.point_files import load_with_sweeps

    samples = read_infos(path, class_names=cfg.class_names, sweeps_num=cfg.sweeps_num)
    if not samples:
        raise BadInputError(f"{path} lists no sample to calibrate on")
    samples = samples[:n] if n else samples
    return len(samples), (load_with_sweeps(s.lidar_path, cfg, s.sweeps[: cfg.sweeps_num],
                                           remove_close=cfg.sweeps_remove_close).points for s in samples)


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
    from cp_debug.data.scenes import heldout_seeds

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

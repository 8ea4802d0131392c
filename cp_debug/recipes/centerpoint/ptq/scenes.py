"""The stage tensors PTQ works on, per scan: the backbone stage's inputs and its head maps.

Scans run through the staged pipeline exactly as `recipes/centerpoint/pipeline.py` does (voxelize ->
decorated features -> voxel encoder -> scatter -> backbone/neck/head), so every quantizer sees the inputs the
deployed stage would. The scans are frames (`data.frames`): calibration frames from an info file
(`--calib DIR`) or synthetic training seeds (`calibration`), held-out frames for the errors and mAP.
"""

from __future__ import annotations

import numpy as np


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

"""One calibrated tiny CenterPoint (max calibration, 2 synthetic scenes), shared by the quant and ptq tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_fp32(tiny_cfg):
    from cp_debug.models.centerpoint.model import build_model

    return build_model(tiny_cfg, seed=3)


@pytest.fixture(scope="session")
def tiny_ptq(tiny_cfg, tiny_fp32):
    from cp_debug.recipes.centerpoint.ptq.quantize import quantize_centerpoint
    from cp_debug.data.frames import calibration, points_of

    return quantize_centerpoint(tiny_fp32, tiny_cfg, points_of(calibration(tiny_cfg, 2), tiny_cfg), 2, method="max")


@pytest.fixture(scope="session")
def tiny_spatial(tiny_cfg, tiny_ptq):
    """spatial_features of one held-out scene (FP32 voxel encoder)."""
    from cp_debug.data.frames import held_out, points_of
    from cp_debug.recipes.centerpoint.ptq.scenes import stage_inputs

    return [stage_inputs(tiny_ptq.fused_fp32, tiny_cfg, p)[1] for p in points_of(held_out(1), tiny_cfg)]

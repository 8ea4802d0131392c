"""The tiny TransFusion and one small synthetic scan, shared by the tests of this folder."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def tiny_scan(seed: int = 0, n: int = 1500) -> np.ndarray:
    """(n, 5) x, y, z, intensity, time inside the tiny preset's range, with a few dense clusters."""
    rng = np.random.default_rng(seed)
    background = rng.uniform([-25.0, -25.0, -2.0, 0.0, 0.0], [25.0, 25.0, 2.0, 1.0, 0.0], size=(n // 2, 5))
    centres = rng.uniform(-20.0, 20.0, size=(10, 2))
    blobs = np.concatenate([rng.normal([cx, cy, 0.0, 0.5, 0.0], [0.8, 0.8, 0.4, 0.1, 0.0], size=(n // 20, 5))
                            for cx, cy in centres])
    return np.concatenate([background, blobs]).astype(np.float32)


def tiny_inputs(seed: int = 0):
    from cp_debug.lidar.voxelize import voxelize
    from cp_debug.models.transfusion.presets import get_preset

    return voxelize(tiny_scan(seed), get_preset("transfusion-tiny"))

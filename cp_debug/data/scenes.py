"""Whole synthetic LiDAR scenes with ground truth, sampled as a spinning LiDAR sees them.

A scene is a ground plane, clutter (walls, poles, vegetation blobs) and objects of the five classes (car,
truck, bus, bicycle, pedestrian) with realistic sizes, road-aligned yaw and speeds. Every laser ray of a
spinning sensor (rings x azimuth steps, at `sensor_height` above the ground at z = 0, as in AWML's base_link
frame) is cast against every primitive; the nearest hit is the return. So points lie on visible surfaces
only, nearer objects occlude farther ones, density falls with range (fixed angular steps, more dropout far
away), and ranges carry noise. Columns: x, y, z, intensity, time (0: every point is from the key frame).

Ground truth: an object is kept as a GT box only if at least `min_points` (default 5) of its returns are in
the cloud; fully occluded or too distant objects are dropped, as dataset converters drop boxes without
LiDAR points. Boxes are (K, 9) [x, y, z_bottom, l, w, h, yaw, vx, vy] (the decoder's convention).

The spec and the primitive table are `data.scene_spec`'s, the placement of things `data.scene_layout`'s, the rays
`data.ray_casting`'s; this module makes a seed's scene from them and says which seeds are which.

Everything is vectorised numpy and deterministic by seed. Training uses seeds below HELDOUT_SEED_BASE;
held-out frames (`data.frames.held_out`) draw from seeds at and above it, so evaluation never sees a training
scene.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cp_debug.data.ray_casting import lidar_returns
from cp_debug.data.scene_layout import lay_out_scene
from cp_debug.data.scene_spec import SceneSpec, scene_spec
from cp_debug.errors import BadInputError
from cp_debug.lidar.synthetic import Scene

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.space import LidarConfig

HELDOUT_SEED_BASE = 1_000_000  # training scenes use seeds below this, held-out scenes from it up
MAX_HELDOUT = 1_000_000  # held-out scenes one run may name: a set of frames that is listed whole before it runs


def make_scene(cfg: "LidarConfig", seed: int, spec: SceneSpec | None = None) -> Scene:
    """The scene of `seed` for preset `cfg` (see the module docstring for what is in it and which boxes are GT)."""
    spec = spec or scene_spec(cfg)
    rng = np.random.default_rng([int(seed), 0x5CE7E])
    prims, boxes, labels = lay_out_scene(rng, spec)
    points, owner = lidar_returns(rng, spec, prims)
    counts = np.bincount(owner[owner >= 0], minlength=len(boxes))
    pcr = np.asarray(cfg.point_cloud_range, dtype=np.float64)
    inside = (boxes[:, 0] >= pcr[0]) & (boxes[:, 0] < pcr[3]) & (boxes[:, 1] >= pcr[1]) & (boxes[:, 1] < pcr[4])
    gt = (counts >= spec.min_points) & inside
    return Scene(points=points, boxes=boxes[gt].astype(np.float32), labels=labels[gt])


# -- seeds and tokens ------------------------------------------------------------------------------------------
def scene_token(seed: int) -> str:
    """The sample token (and file stem) of the scene of `seed`."""
    return f"scene_{int(seed):07d}"


def heldout_seed(token) -> int | None:
    """The seed of a held-out scene's token (`scene_token`'s inverse), None for any other token."""
    if isinstance(token, str) and token.startswith("scene_") and token[6:].isdigit():
        seed = int(token[6:])
        return seed if seed >= HELDOUT_SEED_BASE else None
    return None


def training_seeds(n: int, start: int = 0) -> range:
    """n seeds from `start`; refused where they would reach into the held-out seeds."""
    if n < 1:
        raise BadInputError(f"--n must be at least 1, got {n}")
    if start < 0 or start + n > HELDOUT_SEED_BASE:
        raise BadInputError(
            f"seeds {start}..{start + n - 1} overlap the held-out seeds (>= {HELDOUT_SEED_BASE}) or are negative: "
            f"pick --seed between 0 and {HELDOUT_SEED_BASE - n}"
        )
    return range(start, start + n)


def heldout_seeds(n: int, first: int = 0) -> range:
    """The seeds of n held-out scenes from the `first`-th on (never used for training)."""
    if n < 1:
        raise BadInputError(f"the number of held-out scenes must be at least 1, got {n}")
    if first < 0:
        raise BadInputError(f"the first held-out scene must be >= 0, got {first}")
    if first + n > MAX_HELDOUT:
        raise BadInputError(f"held-out scenes {first}..{first + n - 1}: there are {MAX_HELDOUT} (give a smaller --n "
                            "or first scene)")
    return range(HELDOUT_SEED_BASE + first, HELDOUT_SEED_BASE + first + n)

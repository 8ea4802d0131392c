"""The spec of a synthetic scene (its sensor and contents, per preset) and its table of primitives (shapes and
materials): what the layout (`data.scene_layout`) fills and the ray casting (`data.ray_casting`) reads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.space import LidarConfig

BOX, ELLIPSOID = 0, 1
# material -> (reflectivity mean, std, extra dropout, extra isotropic noise in m)
MATERIALS = {
    "ground": (8.0, 4.0, 0.0, 0.0),
    "wall": (30.0, 10.0, 0.0, 0.0),
    "pole": (60.0, 15.0, 0.0, 0.0),
    "vegetation": (15.0, 6.0, 0.35, 0.08),
    "vehicle": (40.0, 20.0, 0.0, 0.0),
    "person": (25.0, 8.0, 0.0, 0.0),
}
MATERIAL_IDS = {name: i for i, name in enumerate(MATERIALS)}


@dataclass(frozen=True)
class SceneSpec:
    """The sensor and the scene's contents. `max_range` bounds returns and object placement."""

    max_range: float = 50.0
    n_rings: int = 40
    elevation_deg: tuple[float, float] = (-25.0, 8.0)
    azimuth_steps: int = 1800
    sensor_height: float = 1.9
    range_noise: float = 0.02
    dropout: float = 0.05
    object_density: float = 1.0  # multiplies scene_layout.CLASS_MODELS' mean counts (given per 50 m radius)
    walls: int = 6
    poles: int = 16
    blobs: int = 10
    min_points: int = 5


# A range under this keeps the objects of a scene of this range, packed closer, and its clutter scaled with the area:
# the object counts are per area (CLASS_MODELS: per 50 m radius), so a +-12.8 m test grid would otherwise hold one box
# a scene, and six walls of 8-30 m would fill it.
SMALL_RANGE = 25.0


def scene_spec(cfg: "LidarConfig") -> SceneSpec:
    """The spec for a preset: returns and objects inside the preset's range (a 122 m range gets 64 rings; one under
    `SMALL_RANGE` the objects of that range and a share of its clutter)."""
    x0, y0, _, x1, y1, _ = (float(v) for v in cfg.point_cloud_range)
    half = min(abs(x0), abs(x1), abs(y0), abs(y1))
    far = half > 80.0
    spec = SceneSpec(max_range=0.98 * half, n_rings=64 if far else 40,
                     elevation_deg=(-25.0, 8.0) if not far else (-25.0, 4.0),
                     azimuth_steps=2048 if far else 1800)
    if spec.max_range >= SMALL_RANGE:
        return spec
    area = (spec.max_range / SMALL_RANGE) ** 2
    return replace(spec, object_density=1.0 / area, walls=max(1, round(spec.walls * area)),
                   poles=max(1, round(spec.poles * area)), blobs=max(1, round(spec.blobs * area)))


# -- primitives ------------------------------------------------------------------------------------------------
@dataclass
class Primitives:
    """Growing table of primitives: kind, centre (x, y, z), half extents / semi-axes, yaw, material, owner."""

    rows: list

    def add(self, kind: int, x: float, y: float, zc: float, a: float, b: float, c: float, yaw: float,
            material: str, owner: int = -1) -> None:
        self.rows.append((kind, x, y, zc, a, b, c, yaw, MATERIAL_IDS[material], owner))

    def arrays(self) -> np.ndarray:
        return np.asarray(self.rows, dtype=np.float64).reshape(-1, 10)

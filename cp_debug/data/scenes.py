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

Everything is vectorised numpy and deterministic by seed. Training uses seeds below HELDOUT_SEED_BASE;
held-out frames (`data.frames.held_out`) draw from seeds at and above it, so evaluation never sees a training
scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.config import CLASS_NAMES
from cp_debug.models.centerpoint.synthetic import Scene

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.models.centerpoint.config import CenterPointConfig

HELDOUT_SEED_BASE = 1_000_000  # training scenes use seeds below this, held-out scenes from it up
MAX_HELDOUT = 1_000_000  # held-out scenes one run may name: a set of frames that is listed whole before it runs

# class -> (mean l, w, h), (std l, w, h), share moving, (speed lo, hi), mean count per 50 m radius
CLASS_MODELS = {
    "car": ((4.6, 1.9, 1.65), (0.35, 0.1, 0.12), 0.6, (2.0, 14.0), 14.0),
    "truck": ((8.5, 2.5, 3.2), (1.5, 0.15, 0.3), 0.5, (2.0, 10.0), 3.0),
    "bus": ((11.5, 2.95, 3.3), (1.0, 0.1, 0.2), 0.5, (2.0, 10.0), 2.0),
    "bicycle": ((1.75, 0.65, 1.3), (0.1, 0.05, 0.1), 0.7, (1.0, 6.0), 4.0),
    "pedestrian": ((0.7, 0.65, 1.75), (0.1, 0.08, 0.1), 0.7, (0.5, 1.8), 8.0),
}
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
_MATERIAL_IDS = {name: i for i, name in enumerate(MATERIALS)}


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
    object_density: float = 1.0  # multiplies CLASS_MODELS' mean counts (given per 50 m radius)
    walls: int = 6
    poles: int = 16
    blobs: int = 10
    min_points: int = 5


def scene_spec(cfg: "CenterPointConfig") -> SceneSpec:
    """The spec for a preset: returns and objects inside the preset's range (a 122 m range gets 64 rings)."""
    x0, y0, _, x1, y1, _ = (float(v) for v in cfg.point_cloud_range)
    half = min(abs(x0), abs(x1), abs(y0), abs(y1))
    far = half > 80.0
    return SceneSpec(max_range=0.98 * half, n_rings=64 if far else 40,
                     elevation_deg=(-25.0, 8.0) if not far else (-25.0, 4.0),
                     azimuth_steps=2048 if far else 1800)


# -- primitives ------------------------------------------------------------------------------------------------
@dataclass
class Primitives:
    """Growing table of primitives: kind, centre (x, y, z), half extents / semi-axes, yaw, material, owner."""

    rows: list

    def add(self, kind: int, x: float, y: float, zc: float, a: float, b: float, c: float, yaw: float,
            material: str, owner: int = -1) -> None:
        self.rows.append((kind, x, y, zc, a, b, c, yaw, _MATERIAL_IDS[material], owner))

    def arrays(self) -> np.ndarray:
        return np.asarray(self.rows, dtype=np.float64).reshape(-1, 10)


def add_object(prims: Primitives, cls: str, box: np.ndarray, owner: int) -> None:
    """The physical shape of an object inside its GT box [x, y, zb, l, w, h, yaw]."""
    x, y, zb, l, w, h, yaw = box[:7]
    c, s = math.cos(yaw), math.sin(yaw)

    def part(kind, dl, dz, hl, hw, hh, material):  # dl: offset along the heading; dz: centre height
        prims.add(kind, x + c * dl, y + s * dl, zb + dz, hl, hw, hh, yaw, material, owner)

    if cls == "car":
        part(BOX, 0.0, 0.35 * h, 0.5 * l, 0.5 * w, 0.25 * h, "vehicle")  # body 0.1h..0.6h
        part(BOX, -0.05 * l, 0.8 * h, 0.3 * l, 0.45 * w, 0.2 * h, "vehicle")  # cabin 0.6h..h
    elif cls == "truck":
        part(BOX, 0.37 * l, 0.45 * h, 0.13 * l, 0.5 * w, 0.4 * h, "vehicle")  # cab
        part(BOX, -0.12 * l, 0.55 * h, 0.38 * l, 0.5 * w, 0.45 * h, "vehicle")  # cargo
    elif cls == "bus":
        part(BOX, 0.0, 0.53 * h, 0.5 * l, 0.5 * w, 0.47 * h, "vehicle")
    elif cls == "bicycle":
        part(BOX, 0.0, 0.33 * h, 0.5 * l, 0.12 * w, 0.27 * h, "vehicle")  # frame and wheels
        part(ELLIPSOID, 0.0, 0.78 * h, 0.22, 0.2, 0.22 * h, "person")  # rider
    else:  # pedestrian
        part(ELLIPSOID, 0.0, 0.5 * h, 0.4 * l, 0.35 * w, 0.5 * h, "person")


# -- layout ----------------------------------------------------------------------------------------------------
def _free(xy: np.ndarray, radius: float, placed: list) -> bool:
    if not placed:
        return True
    arr = np.asarray(placed)
    return bool((np.hypot(arr[:, 0] - xy[0], arr[:, 1] - xy[1]) > arr[:, 2] + radius).all())


def _layout(rng: np.random.Generator, spec: SceneSpec) -> tuple[Primitives, np.ndarray, np.ndarray]:
    """Clutter first, then objects in the free space; returns primitives, boxes (K, 9) and labels (K,)."""
    prims = Primitives([])
    placed: list[tuple[float, float, float]] = [(0.0, 0.0, 3.0)]  # keep the ego vehicle's spot free
    R = spec.max_range
    road = rng.uniform(-math.pi, math.pi)

    def spot(r_lo: float, r_hi: float) -> np.ndarray:
        r = math.sqrt(rng.uniform(r_lo**2, r_hi**2))  # uniform over the annulus' area
        t = rng.uniform(-math.pi, math.pi)
        return np.array([r * math.cos(t), r * math.sin(t)])

    for _ in range(spec.walls):
        xy, length = spot(0.3 * R, 0.95 * R), rng.uniform(8.0, 30.0)
        yaw = road + rng.integers(0, 4) * math.pi / 2
        height = rng.uniform(2.0, 5.0)
        prims.add(BOX, xy[0], xy[1], height / 2, length / 2, 0.15, height / 2, yaw, "wall")
        c, s = math.cos(yaw), math.sin(yaw)
        for k in np.linspace(-0.5, 0.5, max(int(length / 3), 2)):  # the wall's footprint as a chain of discs
            placed.append((xy[0] + c * k * length, xy[1] + s * k * length, 1.6))
    for _ in range(spec.poles):
        xy, height = spot(4.0, 0.95 * R), rng.uniform(3.0, 7.0)
        if _free(xy, 0.3, placed):
            prims.add(BOX, xy[0], xy[1], height / 2, 0.12, 0.12, height / 2, rng.uniform(0, math.pi), "pole")
            placed.append((xy[0], xy[1], 0.3))
    for _ in range(spec.blobs):
        xy = spot(6.0, 0.95 * R)
        a, b, c = rng.uniform(0.8, 2.5), rng.uniform(0.8, 2.5), rng.uniform(0.6, 1.8)
        if _free(xy, max(a, b), placed):
            prims.add(ELLIPSOID, xy[0], xy[1], rng.uniform(0.7 * c, 3.5), a, b, c, rng.uniform(0, math.pi),
                      "vegetation")
            placed.append((xy[0], xy[1], max(a, b)))

    boxes, labels = [], []
    scale = spec.object_density * (R / 50.0) ** 2
    for label, cls in enumerate(CLASS_NAMES):
        mean, std, moving, (v_lo, v_hi), count = CLASS_MODELS[cls]
        for _ in range(int(rng.poisson(count * scale))):
            lwh = np.maximum(rng.normal(mean, std), 0.5 * np.asarray(mean))
            for _try in range(20):
                xy = spot(3.0, 0.9 * R)
                radius = 0.5 * math.hypot(lwh[0], lwh[1]) + 0.3
                if _free(xy, radius, placed):
                    break
            else:
                continue
            if label <= 2 and rng.uniform() < 0.8:  # vehicles mostly follow the roads
                yaw = road + rng.integers(0, 4) * math.pi / 2 + rng.normal(0, 0.08)
            else:
                yaw = rng.uniform(-math.pi, math.pi)
            yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
            speed = rng.uniform(v_lo, v_hi) if rng.uniform() < moving else 0.0
            box = np.array([xy[0], xy[1], 0.0, *lwh, yaw, speed * math.cos(yaw), speed * math.sin(yaw)])
            add_object(prims, cls, box, len(boxes))
            placed.append((xy[0], xy[1], radius))
            boxes.append(box)
            labels.append(label)
    return prims, np.asarray(boxes, dtype=np.float64).reshape(-1, 9), np.asarray(labels, dtype=np.int64)


# -- ray casting -----------------------------------------------------------------------------------------------
def _intersect(kind: int, o: np.ndarray, d: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Entry distance of rays (local frame: origin o (3,), directions d (N, 3)) into a box / ellipsoid; inf = miss."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == BOX:
            t1 = (-half - o) / d
            t2 = (half - o) / d
            t_near = np.nanmax(np.minimum(t1, t2), axis=1)
            t_far = np.nanmin(np.maximum(t1, t2), axis=1)
            hit = (t_far >= t_near) & (t_near > 0)
            return np.where(hit, t_near, np.inf)
        oo, dd = o / half, d / half
        a = (dd * dd).sum(1)
        b = 2.0 * (dd @ oo)
        c = float(oo @ oo) - 1.0
        disc = b * b - 4 * a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
        return np.where((disc >= 0) & (t > 0), t, np.inf)


def _cast(rng: np.random.Generator, spec: SceneSpec, prims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directions (R, 3), hit distance (R,) and hit primitive (R,; -1 ground, -2 nothing) for every ray."""
    lo, hi = (math.radians(v) for v in spec.elevation_deg)
    elev = np.linspace(lo, hi, spec.n_rings)
    n_az = spec.azimuth_steps
    az = -math.pi + (np.arange(n_az) + rng.uniform()) * (2 * math.pi / n_az)
    ce = np.cos(elev)[:, None]
    d = np.stack([ce * np.cos(az)[None, :], ce * np.sin(az)[None, :],
                  np.broadcast_to(np.sin(elev)[:, None], (spec.n_rings, n_az))], -1).reshape(-1, 3)
    origin = np.array([0.0, 0.0, spec.sensor_height])
    with np.errstate(divide="ignore"):
        t_best = np.where(d[:, 2] < 0, -spec.sensor_height / d[:, 2], np.inf)
    hit = np.where(np.isfinite(t_best), -1, -2)
    rings = np.arange(spec.n_rings)[:, None] * n_az
    for i, (kind, x, y, zc, a, b, c, yaw, _mat, _own) in enumerate(prims):
        dist = math.hypot(x, y)
        reach = math.hypot(a, b)
        if dist - reach > spec.max_range:
            continue
        half_angle = math.pi if reach >= dist else math.asin(reach / dist) + 1e-3
        centre = math.atan2(y, x)
        first = int(math.floor((centre - half_angle - az[0]) / (2 * math.pi / n_az)))
        cols = np.arange(first, first + int(2 * half_angle / (2 * math.pi / n_az)) + 3) % n_az
        idx = (rings + np.unique(cols)[None, :]).ravel()
        cy, sy = math.cos(yaw), math.sin(yaw)
        rot = np.array([[cy, sy, 0.0], [-sy, cy, 0.0], [0.0, 0.0, 1.0]])  # world -> local
        o_local = rot @ (origin - np.array([x, y, zc]))
        t = _intersect(int(kind), o_local, d[idx] @ rot.T, np.array([a, b, c]))
        better = t < t_best[idx]
        t_best[idx[better]] = t[better]
        hit[idx[better]] = i
    return d, t_best, hit


def lidar_returns(rng: np.random.Generator, spec: SceneSpec, primitives: Primitives) -> tuple[np.ndarray, np.ndarray]:
    """Cast every ray against ground + primitives: points (M, 5) and the owner of each (-1: no object)."""
    prims = primitives.arrays()
    d, t, hit = _cast(rng, spec, prims)

    n = len(t)
    material = np.where(hit >= 0, prims[np.maximum(hit, 0), 8], _MATERIAL_IDS["ground"]).astype(np.int64)
    owner = np.where(hit >= 0, prims[np.maximum(hit, 0), 9], -1).astype(np.int64)
    refl, refl_std, extra_drop, extra_noise = (np.array([m[k] for m in MATERIALS.values()]) for k in range(4))
    t_noisy = t + rng.normal(0.0, spec.range_noise, n)
    keep_p = ((1.0 - spec.dropout) * (1.0 - extra_drop[material])
              * (1.0 - 0.4 * np.minimum(t / spec.max_range, 1.0) ** 2))
    keep = (hit != -2) & (t <= spec.max_range) & (rng.uniform(size=n) < keep_p)
    xyz = np.array([0.0, 0.0, spec.sensor_height]) + t_noisy[:, None] * d
    xyz += rng.normal(0.0, 1.0, (n, 3)) * extra_noise[material][:, None]
    xyz[hit == -1, 2] += rng.normal(0.0, 0.03, int((hit == -1).sum()))  # a ground that is not a perfect plane
    intensity = (refl[material] + rng.normal(0.0, 1.0, n) * refl_std[material]) * (0.6 + 0.4 * np.exp(-t / 50.0))
    intensity = np.clip(np.nan_to_num(intensity), 0.0, 255.0)
    points = np.concatenate([xyz, intensity[:, None], np.zeros((n, 1))], 1)[keep]
    return points.astype(np.float32), owner[keep]


def make_scene(cfg: "CenterPointConfig", seed: int, spec: SceneSpec | None = None) -> Scene:
    """The scene of `seed` for preset `cfg` (see the module docstring for what is in it and which boxes are GT)."""
    spec = spec or scene_spec(cfg)
    rng = np.random.default_rng([int(seed), 0x5CE7E])
    prims, boxes, labels = _layout(rng, spec)
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

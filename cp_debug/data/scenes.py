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
class _Discs:
    """The footprints placed so far (x, y, radius), filed by grid cell: `free` looks only at the footprints near
    enough to matter and gives what testing every footprint with np.hypot gave (the scenes' layouts depend on it)."""

    CELL = 8.0  # m
    MARGIN = 1.0  # m: a footprint this far beyond reach is clear whatever the rounding

    def __init__(self, first: tuple[float, float, float]):
        self._cells: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
        self._widest = 0.0
        self.append(first)

    def append(self, disc: tuple[float, float, float]) -> None:
        x, y, r = (float(v) for v in disc)
        self._cells.setdefault((math.floor(x / self.CELL), math.floor(y / self.CELL)), []).append((x, y, r))
        self._widest = max(self._widest, r)

    def free(self, xy, radius: float) -> bool:
        """Whether a disc of `radius` at `xy` clears every footprint: hypot(dx, dy) > r + radius for each."""
        x, y, radius = float(xy[0]), float(xy[1]), float(radius)
        reach = radius + self._widest + self.MARGIN
        lo_x, hi_x = math.floor((x - reach) / self.CELL), math.floor((x + reach) / self.CELL)
        lo_y, hi_y = math.floor((y - reach) / self.CELL), math.floor((y + reach) / self.CELL)
        for cx in range(lo_x, hi_x + 1):
            for cy in range(lo_y, hi_y + 1):
                for px, py, r in self._cells.get((cx, cy), ()):
                    dx, dy, limit = px - x, py - y, r + radius
                    h = math.hypot(dx, dy)  # within an ulp or two of np.hypot: decide at once where that cannot matter
                    if h > limit * (1 + 1e-9):
                        continue
                    if h < limit * (1 - 1e-9) or not np.hypot(dx, dy) > limit:
                        return False
        return True


def _layout(rng: np.random.Generator, spec: SceneSpec) -> tuple[Primitives, np.ndarray, np.ndarray]:
    """Clutter first, then objects in the free space; returns primitives, boxes (K, 9) and labels (K,)."""
    prims = Primitives([])
    placed = _Discs((0.0, 0.0, 3.0))  # keep the ego vehicle's spot free
    R = spec.max_range
    draw, gauss = rng.random, rng.standard_normal

    def uniform(lo: float, hi: float) -> float:  # rng.uniform(lo, hi) to the bit (lo + (hi - lo) * u), 3x cheaper
        return lo + (hi - lo) * draw()

    road = uniform(-math.pi, math.pi)

    def spot(r_lo: float, r_hi: float) -> tuple[float, float]:
        r = math.sqrt(uniform(r_lo**2, r_hi**2))  # uniform over the annulus' area
        t = uniform(-math.pi, math.pi)
        return r * math.cos(t), r * math.sin(t)

    for _ in range(spec.walls):
        xy, length = spot(0.3 * R, 0.95 * R), uniform(8.0, 30.0)
        yaw = road + rng.integers(0, 4) * math.pi / 2
        height = uniform(2.0, 5.0)
        prims.add(BOX, xy[0], xy[1], height / 2, length / 2, 0.15, height / 2, yaw, "wall")
        c, s = math.cos(yaw), math.sin(yaw)
        for k in np.linspace(-0.5, 0.5, max(int(length / 3), 2)):  # the wall's footprint as a chain of discs
            placed.append((xy[0] + c * k * length, xy[1] + s * k * length, 1.6))
    for _ in range(spec.poles):
        xy, height = spot(4.0, 0.95 * R), uniform(3.0, 7.0)
        if placed.free(xy, 0.3):
            prims.add(BOX, xy[0], xy[1], height / 2, 0.12, 0.12, height / 2, uniform(0, math.pi), "pole")
            placed.append((xy[0], xy[1], 0.3))
    for _ in range(spec.blobs):
        xy = spot(6.0, 0.95 * R)
        a, b, c = uniform(0.8, 2.5), uniform(0.8, 2.5), uniform(0.6, 1.8)
        if placed.free(xy, max(a, b)):
            prims.add(ELLIPSOID, xy[0], xy[1], uniform(0.7 * c, 3.5), a, b, c, uniform(0, math.pi),
                      "vegetation")
            placed.append((xy[0], xy[1], max(a, b)))

    boxes, labels = [], []
    scale = spec.object_density * (R / 50.0) ** 2
    for label, cls in enumerate(CLASS_NAMES):
        mean, std, moving, (v_lo, v_hi), count = CLASS_MODELS[cls]
        for _ in range(int(rng.poisson(count * scale))):
            # rng.normal(mean, std): one normal per axis in turn, loc + scale * z
            lwh = [max(m + s * gauss(), 0.5 * m) for m, s in zip(mean, std)]
            for _try in range(20):
                xy = spot(3.0, 0.9 * R)
                radius = 0.5 * math.hypot(lwh[0], lwh[1]) + 0.3
                if placed.free(xy, radius):
                    break
            else:
                continue
            if label <= 2 and draw() < 0.8:  # vehicles mostly follow the roads
                yaw = road + rng.integers(0, 4) * math.pi / 2 + 0.08 * gauss()
            else:
                yaw = uniform(-math.pi, math.pi)
            yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
            speed = uniform(v_lo, v_hi) if draw() < moving else 0.0
            box = np.array([xy[0], xy[1], 0.0, *lwh, yaw, speed * math.cos(yaw), speed * math.sin(yaw)])
            add_object(prims, cls, box, len(boxes))
            placed.append((xy[0], xy[1], radius))
            boxes.append(box)
            labels.append(label)
    return prims, np.asarray(boxes, dtype=np.float64).reshape(-1, 9), np.asarray(labels, dtype=np.int64)


# -- ray casting -----------------------------------------------------------------------------------------------
# A frame's points must stay bit-identical to the first version's (f2ea795) for every seed and preset: tests, reports
# and earlier measurements were made on them. So every ray that can reach a primitive goes through the same
# arithmetic as before (the same matmul, divisions, min and max, in the same order), and only rays that cannot
# reach it are left out: BLAS and numpy's element-wise loops give a row the same result whatever rows are beside
# it, for two rows or more. `benchmarks/scene_speed.py --check` compares old and new scenes on the machine it runs on.
_MARGIN = 1e-3  # rad: rays this near a primitive's angular extent are still tested


def _ray_windows(spec: SceneSpec, prims: np.ndarray, elev: np.ndarray, az0: float) -> np.ndarray:
    """Per primitive the block of rays that can meet it, (N, 4) int [r0, r1, start, width]: rings r0 .. r1 x `width`
    azimuth columns from `start` (wrapping); an empty block (r0 == r1) for a primitive no ray can reach.

    Columns: the primitive's horizontal reach seen from the sensor, with a margin, as the first version took them.
    Rings: the elevations of the upright cylinder that holds it (radius `reach` around its centre, heights
    zc - c .. zc + c), seen from the sensor. Any block holding every ray that meets the primitive gives the same
    scene (a ray that misses it is not changed by it), so only the test that drops a primitive beyond
    `spec.max_range` must be the first version's, scalar for scalar."""
    n_az, step = spec.azimuth_steps, 2 * math.pi / spec.azimuth_steps
    x, y, zc, a, b, c = (prims[:, k] for k in (1, 2, 3, 4, 5, 6))
    rows = prims.tolist()
    dist = np.array([math.hypot(p[1], p[2]) for p in rows])
    reach = np.array([math.hypot(p[4], p[5]) for p in rows])
    live = np.array([dd - rr <= spec.max_range for dd, rr in zip(dist.tolist(), reach.tolist())], dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        around = reach >= dist  # the sensor inside the footprint's circle: every column, every ring
        half_angle = np.where(around, math.pi, np.arcsin(np.minimum(reach / dist, 1.0)) + _MARGIN)
        first = np.floor((np.arctan2(y, x) - half_angle - az0) / step)
        width = np.floor(2 * half_angle / step) + 3
        start = np.where(width >= n_az, 0, np.mod(first, n_az))
        near, far = dist - reach, dist + reach
        z_lo, z_hi = zc - c - spec.sensor_height, zc + c - spec.sensor_height
        e_lo = np.arctan2(z_lo, np.where(z_lo < 0, near, far)) - _MARGIN
        e_hi = np.arctan2(z_hi, np.where(z_hi > 0, near, far)) + _MARGIN
    inside = near <= 1e-6
    r0 = np.where(inside, 0, np.searchsorted(elev, e_lo, "left"))
    r1 = np.where(inside, len(elev), np.searchsorted(elev, e_hi, "right"))
    r1 = np.where(live, np.maximum(r0, r1), r0)
    out = np.stack([r0, r1, start, np.minimum(width, n_az)], 1).astype(np.int64)
    one = (out[:, 1] - out[:, 0]) * out[:, 3] == 1  # one row would take BLAS's vector path, which rounds otherwise
    out[one, 0], out[one, 1] = 0, len(elev)
    return out


@dataclass(frozen=True)
class _Blocks:
    """Primitives of one kind, each with its block of rays (`_ray_windows`), its half extents / semi-axes, its world
    -> local rotation and the sensor in its frame."""

    prim: np.ndarray  # (P,) rows of the primitive table
    window: np.ndarray  # (P, 4) r0, r1, start, width
    half: np.ndarray  # (P, 3)
    rot: np.ndarray  # (P, 3, 3)
    origin: np.ndarray  # (P, 3)

    @classmethod
    def of(cls, prims: np.ndarray, sel: np.ndarray, window: np.ndarray, sensor: np.ndarray) -> "_Blocks":
        yaw = prims[sel, 7].tolist()
        cy = np.array([math.cos(v) for v in yaw])  # math's, as the first version's
        sy = np.array([math.sin(v) for v in yaw])
        rot = np.zeros((len(sel), 3, 3))
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = cy, sy, -sy, cy, 1.0
        # a 3 x 3 matrix-vector product per primitive, as before (matmul makes one BLAS call per stacked item)
        origin = np.matmul(rot, (sensor - prims[sel, 1:4])[:, :, None])[:, :, 0]
        return cls(sel, window, prims[sel, 4:7], rot, origin)

    def counts(self) -> np.ndarray:
        return (self.window[:, 1] - self.window[:, 0]) * self.window[:, 3]

    def rows(self, per_block: np.ndarray) -> np.ndarray:
        """A value per primitive spread over its block's rows."""
        return np.repeat(per_block, self.counts(), axis=0)

    def rays(self, n_az: int) -> np.ndarray:
        """The flat ray index (ring * n_az + column) of every row, block after block, rings outer."""
        r0, r1, start, width = self.window.T
        rings = r1 - r0
        pair = np.repeat(np.arange(len(rings)), rings)  # one (block, ring) pair per ring of each block
        ring = r0[pair] + np.arange(len(pair)) - np.repeat(np.cumsum(rings) - rings, rings)
        w = width[pair]
        row = np.repeat(np.arange(len(pair)), w)
        col = start[pair][row] + np.arange(len(row)) - np.repeat(np.cumsum(w) - w, w)
        col[col >= n_az] -= n_az
        return ring[row] * n_az + col

    def local(self, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ray index, primitive, direction in the primitive's frame) of every row, for directions `d` (rings x
        columns x 3); each block's rotation is its own matmul, as one primitive's was."""
        rays = self.rays(d.shape[1])
        world = np.take(d.reshape(-1, 3), rays, axis=0)
        dl = np.empty_like(world)
        end = 0
        for rot, n in zip(self.rot, self.counts().tolist()):
            np.matmul(world[end:end + n], rot.T, out=dl[end:end + n])
            end += n
        return rays, self.rows(self.prim), dl


def _box_entry(blocks: _Blocks, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry distance into each box of every row (inf: a miss): the slab test, `-half - o` and `half - o` over the
    direction, entry the largest per-axis entry ignoring NaN (an axis the ray runs along, as np.nanmax), exit the
    smallest exit."""
    ray, prim, dl = blocks.local(d)
    axes = np.ascontiguousarray(dl.T)  # (3, M): each axis a contiguous row
    counts = blocks.counts()
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.repeat((-blocks.half - blocks.origin).T, counts, axis=1)
        t1 /= axes
        t2 = np.repeat((blocks.half - blocks.origin).T, counts, axis=1)
        t2 /= axes
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2, out=t2)
        t_near = np.fmax(np.fmax(lo[0], lo[1]), lo[2])
        t_far = np.fmin(np.fmin(hi[0], hi[1]), hi[2])
        hit = (t_far >= t_near) & (t_near > 0)
    return ray, prim, np.where(hit, t_near, np.inf)


def _ellipsoid_entry(blocks: _Blocks, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry distance into each ellipsoid of every row (inf: a miss): the unit sphere in coordinates scaled by the
    semi-axes."""
    ray, prim, dl = blocks.local(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        oo = blocks.origin / blocks.half
        dd = dl / blocks.rows(blocks.half)
        a = (dd * dd).sum(1)
        b = np.empty(len(ray))
        end = 0
        for o, n in zip(oo, blocks.counts().tolist()):  # per block, as one primitive's matrix-vector product was
            b[end:end + n] = 2.0 * (dd[end:end + n] @ o)
            end += n
        c = blocks.rows(np.matmul(oo[:, None, :], oo[:, :, None])[:, 0, 0] - 1.0)  # o . o per primitive
        disc = b * b - 4 * a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
        return ray, prim, np.where((disc >= 0) & (t > 0), t, np.inf)


def _cast(rng: np.random.Generator, spec: SceneSpec, prims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directions (R, 3), hit distance (R,) and hit primitive (R,; -1 ground, -2 nothing) for every ray.

    A ray's hit is the ground's unless a primitive's is strictly nearer, the first such primitive in table order
    winning a tie: what testing the primitives one after the other gave."""
    lo, hi = (math.radians(v) for v in spec.elevation_deg)
    elev = np.linspace(lo, hi, spec.n_rings)
    n_az = spec.azimuth_steps
    az = -math.pi + (np.arange(n_az) + rng.uniform()) * (2 * math.pi / n_az)
    ce = np.cos(elev)[:, None]
    d = np.empty((spec.n_rings, n_az, 3))
    np.multiply(ce, np.cos(az)[None, :], out=d[..., 0])
    np.multiply(ce, np.sin(az)[None, :], out=d[..., 1])
    d[..., 2] = np.sin(elev)[:, None]
    origin = np.array([0.0, 0.0, spec.sensor_height])
    with np.errstate(divide="ignore"):  # the ground: a ring's rays all meet it at one distance, or never
        ring_t = np.where(d[:, 0, 2] < 0, -spec.sensor_height / d[:, 0, 2], np.inf)
    t_best = np.repeat(ring_t, n_az)
    hit = np.repeat(np.where(np.isfinite(ring_t), -1, -2), n_az)
    window = _ray_windows(spec, prims, elev, float(az[0]))
    found = []
    for kind, entry in ((BOX, _box_entry), (ELLIPSOID, _ellipsoid_entry)):
        sel = np.flatnonzero((prims[:, 0] == kind) & (window[:, 1] > window[:, 0]))
        if len(sel):
            found.append(entry(_Blocks.of(prims, sel, window[sel], origin), d))
    if found:
        ray, prim, t = (np.concatenate(v) for v in zip(*found))
        nearer = t < t_best[ray]
        ray, prim, t = ray[nearer], prim[nearer], t[nearer]
        np.minimum.at(t_best, ray, t)
        won = t == t_best[ray]  # every ray with a nearer primitive has one
        first = np.full(len(hit), len(prims))
        np.minimum.at(first, ray[won], prim[won])  # a tie goes to the primitive tested first
        hit[ray[won]] = first[ray[won]]
    return d.reshape(-1, 3), t_best, hit


def lidar_returns(rng: np.random.Generator, spec: SceneSpec, primitives: Primitives) -> tuple[np.ndarray, np.ndarray]:
    """Cast every ray against ground + primitives: points (M, 5) and the owner of each (-1: no object).

    Every ray draws its noise (range, dropout, jitter, ground, intensity: the random stream stays the same), and
    the points are computed for the rays kept."""
    prims = primitives.arrays()
    d, t, hit = _cast(rng, spec, prims)

    n = len(t)
    refl, refl_std, extra_drop, extra_noise = (np.array([m[k] for m in MATERIALS.values()]) for k in range(4))
    range_noise = rng.normal(0.0, spec.range_noise, n)
    reach = np.flatnonzero((hit != -2) & (t <= spec.max_range))  # the rays that can return
    material = np.append(prims[:, 8], _MATERIAL_IDS["ground"]).astype(np.int64)[hit[reach]]  # hit -1: the ground
    t_r = t[reach]
    keep_p = ((1.0 - spec.dropout) * (1.0 - extra_drop[material])
              * (1.0 - 0.4 * np.minimum(t_r / spec.max_range, 1.0) ** 2))
    chosen = rng.uniform(size=n)[reach] < keep_p
    jitter = rng.standard_normal((n, 3))  # the draws of normal(0, 1): multiplied by each material's extra noise
    ground = hit == -1
    ground_z = rng.normal(0.0, 0.03, int(ground.sum()))  # a ground that is not a perfect plane
    shade = rng.standard_normal(n)

    kept = reach[chosen]
    keep = np.zeros(n, dtype=bool)
    keep[kept] = True
    mat, t_k, hit_k = material[chosen], t_r[chosen], hit[kept]
    xyz = np.take(d, kept, axis=0)  # then (t + noise) * direction + sensor, in place
    xyz *= (t_k + range_noise[kept])[:, None]
    xyz += np.array([0.0, 0.0, spec.sensor_height])
    for m in np.flatnonzero(extra_noise):  # no extra noise adds zero to a finite value: nothing to add
        rows = np.flatnonzero(mat == m)
        xyz[rows] += jitter[kept[rows]] * extra_noise[m]
    xyz[hit_k == -1, 2] += ground_z[keep[ground]]
    intensity = (refl[mat] + shade[kept] * refl_std[mat]) * (0.6 + 0.4 * np.exp(-t_k / 50.0))
    points = np.empty((len(kept), 5), np.float32)
    points[:, :3] = xyz
    points[:, 3] = np.clip(np.nan_to_num(intensity), 0.0, 255.0)
    points[:, 4] = 0.0
    return points, np.append(prims[:, 9], -1).astype(np.int64)[hit_k]


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

"""A spinning LiDAR's returns from a scene's primitives: every laser ray (rings x azimuth steps, at `sensor_height`
above the ground at z = 0) is cast against the ground and every primitive, the nearest hit is the return; dropout,
range noise, jitter and intensity are drawn per ray. Vectorised numpy, bit-identical to the first version's."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cp_debug.data.scene_spec import BOX, ELLIPSOID, MATERIAL_IDS, MATERIALS, Primitives, SceneSpec

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
    material = np.append(prims[:, 8], MATERIAL_IDS["ground"]).astype(np.int64)[hit[reach]]  # hit -1: the ground
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

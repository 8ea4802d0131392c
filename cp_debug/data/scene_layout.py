"""Where a synthetic scene's things stand: clutter (walls, poles, vegetation blobs) and objects of the five classes
with realistic sizes, road-aligned yaw and speeds, placed in free space; each object's physical shape inside its GT
box. Deterministic by the random stream it is given."""

from __future__ import annotations

import math

import numpy as np

from cp_debug.data.scene_spec import BOX, ELLIPSOID, Primitives, SceneSpec
from cp_debug.lidar.space import CLASS_NAMES

# class -> (mean l, w, h), (std l, w, h), share moving, (speed lo, hi), mean count per 50 m radius
CLASS_MODELS = {
    "car": ((4.6, 1.9, 1.65), (0.35, 0.1, 0.12), 0.6, (2.0, 14.0), 14.0),
    "truck": ((8.5, 2.5, 3.2), (1.5, 0.15, 0.3), 0.5, (2.0, 10.0), 3.0),
    "bus": ((11.5, 2.95, 3.3), (1.0, 0.1, 0.2), 0.5, (2.0, 10.0), 2.0),
    "bicycle": ((1.75, 0.65, 1.3), (0.1, 0.05, 0.1), 0.7, (1.0, 6.0), 4.0),
    "pedestrian": ((0.7, 0.65, 1.75), (0.1, 0.08, 0.1), 0.7, (0.5, 1.8), 8.0),
}


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


def lay_out_scene(rng: np.random.Generator, spec: SceneSpec) -> tuple[Primitives, np.ndarray, np.ndarray]:
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

"""Write N synthetic scenes to a folder: `points/<token>.pcd.bin` (float32 x 5) and `infos.pkl` (mmdet3d v1.x).

Each point file is written whole (temp + rename) and the info file last, atomically, so a folder with an
`infos.pkl` is complete. Scenes are generated in worker processes when `workers` > 1 (same bytes either way).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from cp_debug.files import write_bytes_atomic
from cp_debug.data.boxes import count_points_in_boxes
from cp_debug.data.infos import INFO_FILE, POINTS_DIR, info_entry, write_infos
from cp_debug.data.scenes import make_scene, scene_token

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.space import LidarConfig


def write_points(path: Path, points: np.ndarray) -> None:
    """(M, 5) float32 -> a KITTI/T4-style .bin, atomically."""
    write_bytes_atomic(path, np.ascontiguousarray(points, dtype=np.float32).tobytes(), parents=True)


def _one(args: tuple) -> dict:
    cfg, seed, index, out = args
    scene = make_scene(cfg, seed)
    token = scene_token(seed)
    rel = f"{POINTS_DIR}/{token}.pcd.bin"
    write_points(Path(out) / rel, scene.points)
    npts = count_points_in_boxes(scene.points, scene.boxes)
    return info_entry(index, token, rel, scene.boxes, scene.labels, npts)


def write_scene_set(cfg: "LidarConfig", out: str | Path, seeds, *, workers: int = 1,
                    on_scene: Callable[[int], None] | None = None) -> Path:
    """Generate the scenes of `seeds` into `out`; returns the info file's path. `on_scene(i)` after each."""
    out = Path(out)
    (out / POINTS_DIR).mkdir(parents=True, exist_ok=True)
    jobs = [(cfg, int(s), i, str(out)) for i, s in enumerate(seeds)]
    entries = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for i, entry in enumerate(pool.map(_one, jobs, chunksize=4)):
                entries.append(entry)
                if on_scene:
                    on_scene(i)
    else:
        for i, job in enumerate(jobs):
            entries.append(_one(job))
            if on_scene:
                on_scene(i)
    return write_infos(out / INFO_FILE, entries, cfg.class_names)

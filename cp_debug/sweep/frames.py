"""Where the frames of a sweep come from: an info file (mmdet3d / T4), a folder of point files, a rosbag2 folder
(its PointCloud2 clouds), or held-out synthetic scenes. A frame holds only how to get its points and ground truth,
so a list of thousands of frames costs nothing and each worker reads (or generates) one frame at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cp_debug.errors import BadInputError

POINT_SUFFIXES = (".bin", ".npy", ".npz", ".pcd")


@dataclass(frozen=True)
class Frame:
    """One scan: its token, and either a point file (`path`, ground truth from the info file if any) or the seed
    of a held-out synthetic scene (`seed`, ground truth generated with it)."""

    token: str
    path: str | None = None
    seed: int | None = None
    gt_boxes: tuple | None = None  # ((K, 9) box rows, K labels, K lidar point counts or None) from an info file
    sweeps: tuple = ()  # points.Sweep: the past scans the config's LoadPointsFromMultiSweeps adds (info files)
    bag_topic: str | None = None  # a rosbag2 frame: `path` is the bag, this its PointCloud2 topic ...
    bag_time: int | None = None  # ... and the message's bag time (ns)

    def load(self, cfg) -> tuple[np.ndarray, dict | None]:
        """(points, ground truth as {"boxes", "labels", "num_points"} or None). Raises on an unreadable file."""
        if self.seed is not None:
            from cp_debug.data.scenes import make_scene

            scene = make_scene(cfg, self.seed)
            return scene.points, {"boxes": np.asarray(scene.boxes, np.float64), "labels": np.asarray(scene.labels),
                                  "num_points": None}
        from cp_debug.data.point_files import load_with_sweeps

        if self.path is None:
            raise BadInputError(f"frame {self.token!r} has neither a point file nor a seed")
        if self.bag_time is not None:
            from cp_debug.data.rosbag import read_cloud_at
            from cp_debug.models.centerpoint.points import prepare_points

            cloud = read_cloud_at(self.path, self.bag_topic, self.bag_time)
            src = f"{self.path} {self.bag_topic} at {self.bag_time}"
            return prepare_points(cloud, cfg, source=src, file_layout=True), None
        points = load_with_sweeps(self.path, cfg, self.sweeps, remove_close=cfg.sweeps_remove_close).points
        gt = None
        if self.gt_boxes is not None:
            boxes, labels, npts = self.gt_boxes
            gt = {"boxes": np.asarray(boxes, np.float64).reshape(-1, 9), "labels": np.asarray(labels, np.int64),
                  "num_points": None if npts is None else np.asarray(npts, np.int64)}
        return points, gt


def heldout_frames(n: int) -> list[Frame]:
    """The first n held-out synthetic scenes (the seeds `cpdebug eval` uses; never training seeds)."""
    from cp_debug.data.scenes import heldout_seeds, scene_token

    if n < 1:
        raise BadInputError(f"--n {n}: sweep at least one frame")
    return [Frame(scene_token(s), seed=s) for s in heldout_seeds(n)]


def frames_from(scenes: str | Path, cfg, data_root: str | Path | None = None,
                lidar_topic: str | None = None) -> list[Frame]:
    """The frames of `scenes`: an info file (or a folder holding infos.pkl; its relative lidar paths joined to
    `data_root`, default its folder; each sample with its first `cfg.sweeps_num` sweeps), a rosbag2 folder (every
    cloud of `lidar_topic`, default Autoware's; no ground truth), else a folder of point files."""
    p = Path(scenes)
    if not p.exists():
        raise BadInputError(f"--scenes {p} does not exist: give an info file, a folder with infos.pkl, a rosbag2 "
                            "folder, or a folder of point files")
    if (p / "metadata.yaml").is_file():  # a rosbag2 folder (sqlite3 or mcap)
        from cp_debug.data.rosbag import LIDAR_TOPIC, cloud_times

        topic = lidar_topic or LIDAR_TOPIC
        return [Frame(str(t), path=str(p), bag_topic=topic, bag_time=t) for t in cloud_times(p, topic)]
    if p.is_file() or (p / "infos.pkl").is_file():
        from cp_debug.data.infos import read_infos

        samples = read_infos(p, data_root, class_names=cfg.class_names, sweeps_num=cfg.sweeps_num)
        if not samples:
            raise BadInputError(f"{p} lists no sample; nothing to sweep")
        frames = [Frame(s.token, path=str(s.lidar_path),
                        gt_boxes=(np.asarray(s.boxes).tolist(), np.asarray(s.labels).tolist(),
                                  np.asarray(s.num_lidar_pts).tolist() if len(s.num_lidar_pts) else None),
                        sweeps=s.sweeps[: cfg.sweeps_num])
                  for s in samples]
    else:
        files = sorted(f for f in p.iterdir() if f.suffix in POINT_SUFFIXES and f.is_file())
        if not files:
            raise BadInputError(f"--scenes {p}: no info file and no point file ({', '.join(POINT_SUFFIXES)}) in it")
        frames = [Frame(f.stem, path=str(f)) for f in files]
    tokens = [f.token for f in frames]
    if len(set(tokens)) != len(tokens):
        raise BadInputError(f"{p}: frame tokens repeat; each scan needs its own token (file stem)")
    return frames

"""One frame, the scan every feature passes around: a token and where its points come from.

A `Frame` holds only how to get its scan, so a list of thousands costs nothing and a worker loads one at a time;
`frame.load(cfg)` gives the points (as the staged pipeline takes them: a 5-column file-layout array or the model's
columns) and the typed `GroundTruth` where the source has one. Sources:

- `SceneSeed`: a synthetic scene of `data.scenes.make_scene` (ray-cast, ground truth from its boxes); held-out
  seeds (`held_out`) for evaluation, training seeds or far held-out seeds for calibration (`calibration`).
- `PointFile`: a point file with the sweeps the config adds and, from an info file, its ground truth.
- `BagMessage`: one PointCloud2 message of a rosbag2 folder (topic, bag time), read as the node reads it (the key
  frame's time column 0: `data.rosbag.node_points`); no ground truth.
- `ModelScan`: `lidar.synthetic.synthetic_scene`, bisect's default scan.
- `InMemory`: a frame already loaded (`frame.in_memory(cfg)`), for features that run many experiments on it.

Two scan generators, on purpose: `synthetic_scene` (surface-sampled boxes) is part of the model: the random
init calibrates on it and it is every earlier bisect report's default input, so it lives with the model and
stays as it is; every held-out, calibration and training frame comes from `make_scene`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence, Union

import numpy as np

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.data.point_files import Sweep
    from cp_debug.lidar.space import LidarConfig

POINT_SUFFIXES = (".bin", ".npy", ".npz", ".pcd")
CALIBRATION_SEED_OFFSET = 500_000  # held-out calibration scenes: this far past the first held-out seed
TRAINING_CALIBRATION_SCENES = 100  # PTQ's calibration scenes when no count is given


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """A frame's boxes (K, 9) float64 [x, y, z_bottom, l, w, h, yaw, vx, vy], labels (K,) int64 into the class
    names, and lidar points per box (K,) int64 where an info file gives them (None otherwise)."""

    boxes: np.ndarray
    labels: np.ndarray
    num_points: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", np.asarray(self.boxes, np.float64).reshape(-1, 9))
        object.__setattr__(self, "labels", np.asarray(self.labels, np.int64).reshape(-1))
        if self.num_points is not None:
            object.__setattr__(self, "num_points", np.asarray(self.num_points, np.int64).reshape(-1))


@dataclass(frozen=True, eq=False)
class Scan:
    """What `Frame.load` gives: the points and the ground truth (None where the source has none)."""

    points: np.ndarray
    truth: GroundTruth | None = None


@dataclass(frozen=True)
class SceneSeed:
    """The synthetic scene of `seed` (`data.scenes.make_scene`), with its ground truth."""

    seed: int

    def load(self, cfg: "LidarConfig") -> Scan:
        from cp_debug.data.scenes import make_scene

        scene = make_scene(cfg, self.seed)
        return Scan(scene.points, GroundTruth(scene.boxes, scene.labels))

    def truth(self, cfg: "LidarConfig") -> GroundTruth:
        return self.load(cfg).truth


@dataclass(frozen=True)
class PointFile:
    """A point file with the sweeps the config's LoadPointsFromMultiSweeps adds, and its ground truth (an info
    file's sample) or None."""

    path: str
    sweeps: tuple["Sweep", ...] = ()
    ground_truth: GroundTruth | None = None

    def load(self, cfg: "LidarConfig") -> Scan:
        from cp_debug.data.point_files import load_with_sweeps

        points = load_with_sweeps(self.path, cfg, self.sweeps, remove_close=cfg.sweeps_remove_close).points
        return Scan(points, self.ground_truth)

    def truth(self, cfg: "LidarConfig") -> GroundTruth | None:
        return self.ground_truth


@dataclass(frozen=True)
class BagMessage:
    """The PointCloud2 message of `topic` recorded at bag time `time_ns` in the rosbag2 folder `path`."""

    path: str
    topic: str
    time_ns: int

    def load(self, cfg: "LidarConfig") -> Scan:
        from cp_debug.data.rosbag import node_points, read_cloud_at

        cloud = read_cloud_at(self.path, self.topic, self.time_ns)
        return Scan(node_points(cloud, cfg, f"{self.path} {self.topic} at {self.time_ns}"))

    def truth(self, cfg: "LidarConfig") -> None:
        return None


@dataclass(frozen=True)
class ModelScan:
    """The model's own synthetic scan of `seed` (`lidar.synthetic.synthetic_scene`)."""

    seed: int

    def load(self, cfg: "LidarConfig") -> Scan:
        from cp_debug.lidar.synthetic import synthetic_scene

        scene = synthetic_scene(self.seed, cfg)
        return Scan(scene.points, GroundTruth(scene.boxes, scene.labels))

    def truth(self, cfg: "LidarConfig") -> GroundTruth:
        return self.load(cfg).truth

    def describe(self) -> str:
        return f"synthetic scene (seed {self.seed})"


@dataclass(frozen=True, eq=False)
class InMemory:
    """A scan already loaded: `load` gives it back as it is."""

    scan: Scan

    def load(self, cfg: "LidarConfig") -> Scan:
        return self.scan

    def truth(self, cfg: "LidarConfig") -> GroundTruth | None:
        return self.scan.truth


Source = Union[SceneSeed, PointFile, BagMessage, ModelScan, InMemory]


@dataclass(frozen=True)
class Frame:
    """One scan: its token (a sample token, a file stem, a bag time) and its source."""

    token: str
    source: Source

    def load(self, cfg: "LidarConfig") -> Scan:
        """The points and ground truth of this frame for preset `cfg`; a BadInputError for an unreadable source."""
        return self.source.load(cfg)

    def truth(self, cfg: "LidarConfig") -> GroundTruth | None:
        """The ground truth alone (None where the source has none); a point file's without reading its points."""
        return self.source.truth(cfg)

    @property
    def portable(self) -> bool:
        """Whether the frame is the same on any machine without a file of this one: a synthetic scene (made from
        its seed) or a scan already in memory; a point file's or a bag's is read from this machine's disk."""
        return isinstance(self.source, (SceneSeed, ModelScan, InMemory))

    def in_memory(self, cfg: "LidarConfig") -> "Frame":
        """This frame loaded once, for work that runs it many times (a fix's experiments, every backend of eval)."""
        return self if isinstance(self.source, InMemory) else Frame(self.token, InMemory(self.load(cfg)))


def points_of(frames: Sequence[Frame], cfg: "LidarConfig") -> Iterator[np.ndarray]:
    """The points of each frame, loaded one at a time."""
    for f in frames:
        yield f.load(cfg).points


# -- held-out and calibration frames ---------------------------------------------------------------------------
def held_out(n: int, first: int = 0) -> list[Frame]:
    """n held-out synthetic frames from the `first`-th held-out seed on (never training seeds; eval's n are
    first=0). Tokens are `scene_token(seed)`; the preset is given when a frame is loaded."""
    from cp_debug.data.scenes import heldout_seeds, scene_token

    return [Frame(scene_token(s), SceneSeed(s)) for s in heldout_seeds(n, first)]


class _FrameSequence:
    """What every frame set has: its frames (a field of the dataclass), their count and tokens."""

    frames: tuple[Frame, ...]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(f.token for f in self.frames)


@dataclass(frozen=True)
class HeldOutSet(_FrameSequence):
    """n held-out frames from the `first`-th held-out seed, loaded once; named by that range (`to_json`), so a
    fix's `--check` rebuilds exactly the same frames."""

    first: int
    frames: tuple[Frame, ...]

    @classmethod
    def load(cls, cfg: "LidarConfig", n: int, first: int = 0) -> "HeldOutSet":
        return cls(first, tuple(f.in_memory(cfg) for f in held_out(n, first)))

    def to_json(self) -> dict:
        return {"kind": "heldout_synthetic", "first": self.first, "n": len(self.frames), "tokens": list(self.tokens)}


@dataclass(frozen=True)
class ScenesSet(_FrameSequence):
    """The frames of the user's scenes (an info file or a folder holding infos.pkl: frames with ground truth) from
    the `first`-th on, loaded once; named by the file, the range and the tokens (`to_json`), so a fix's `--check`
    reads exactly the same ones again."""

    path: str
    first: int
    frames: tuple[Frame, ...]
    data_root: str | None = None

    @classmethod
    def load(cls, cfg: "LidarConfig", path: str | Path, first: int = 0, n: int | None = None,
             data_root: str | Path | None = None) -> "ScenesSet":
        """Frames `first` .. `first + n` of `path` (all from `first` when n is None)."""
        p = Path(path)
        if not (p.is_file() or (p / "infos.pkl").is_file()):
            raise BadInputError(f"--scenes {p}: give an info file (or a folder with infos.pkl, as `cpdebug scenes` "
                                "writes): the frames are judged against their ground truth")
        every = from_scenes(p, cfg, data_root, task="judge")
        picked = every[first:] if n is None else every[first:first + n]
        if not picked:
            raise BadInputError(f"--scenes {p} has {len(every)} frame(s): none from frame {first} on "
                                "(lower --first-scene)")
        return cls(str(p), first, tuple(f.in_memory(cfg) for f in picked),
                   None if data_root is None else str(data_root))

    def split(self, n_last: int) -> "tuple[ScenesSet, ScenesSet]":
        """(all but the last `n_last` frames, the last `n_last`): a search set and a set it never saw."""
        cut = len(self.frames) - n_last
        return (ScenesSet(self.path, self.first, self.frames[:cut], self.data_root),
                ScenesSet(self.path, self.first + cut, self.frames[cut:], self.data_root))

    def to_json(self) -> dict:
        return {"kind": "scenes", "path": self.path, "data_root": self.data_root, "first": self.first,
                "n": len(self.frames), "tokens": list(self.tokens)}


FrameSet = Union[HeldOutSet, ScenesSet]  # the frames a fix is judged on


def frame_set_from_json(doc: dict, cfg: "LidarConfig") -> FrameSet:
    """The frame set a `to_json()` names, loaded again; one line where its frames are not those any more."""
    if doc.get("kind") == "scenes":
        frames = ScenesSet.load(cfg, doc["path"], doc["first"], doc["n"], doc.get("data_root"))
    else:
        frames = HeldOutSet.load(cfg, doc["n"], doc["first"])
    if list(frames.tokens) != list(doc["tokens"]):
        raise BadInputError(f"the frames recorded ({doc['tokens'][:2]}...) are not the ones "
                            f"{doc.get('path') or 'this cp_debug'} gives now; write the fix again")
    return frames


def calibration(cfg: "LidarConfig", n: int | None, *, infos: str | Path | None = None,
                held_out_seeds: bool = False, exclude: Sequence[str] = ()) -> list[Frame]:
    """Calibration frames: the samples of an info file (`infos`, the first n; all when n is None or 0), else n
    synthetic scenes: training seeds 0..n-1 (PTQ, as a deployment calibrates on training data; n None: 100), or
    with `held_out_seeds` far held-out seeds (CALIBRATION_SEED_OFFSET past the first) whose tokens are not in
    `exclude` (the INT8 runners of eval, sweep and bench: never a scene they evaluate). Two seed pools because
    each keeps the scenes its earlier results were calibrated on."""
    from cp_debug.data.scenes import HELDOUT_SEED_BASE, scene_token

    if infos is not None:
        return from_infos(infos, cfg, n=n, task="calibrate on")
    if held_out_seeds:
        out, seed, skip = [], HELDOUT_SEED_BASE + CALIBRATION_SEED_OFFSET, set(exclude)
        while len(out) < (n or 0):
            if scene_token(seed) not in skip:
                out.append(Frame(scene_token(seed), SceneSeed(seed)))
            seed += 1
        return out
    n = TRAINING_CALIBRATION_SCENES if n is None else int(n)
    if n < 1:
        raise BadInputError(f"--calib-n must be at least 1, got {n}")
    return [Frame(scene_token(s), SceneSeed(s)) for s in range(n)]


# -- frames of files -------------------------------------------------------------------------------------------
def from_infos(path: str | Path, cfg: "LidarConfig", data_root: str | Path | None = None, *,
               n: int | None = None, task: str = "read") -> list[Frame]:
    """The samples of an mmdet3d info file (or DIR/infos.pkl; the first n when n is given), each with its ground
    truth and the first `cfg.sweeps_num` sweeps it lists; relative lidar paths are joined to `data_root`
    (default: the file's folder). `task` finishes the error when it lists none ("nothing to evaluate")."""
    from cp_debug.data.infos import read_infos

    samples = read_infos(path, data_root, class_names=cfg.class_names, sweeps_num=cfg.sweeps_num)
    if not samples:
        raise BadInputError(f"{path} lists no sample; nothing to {task}")
    samples = samples[:n] if n else samples
    return [Frame(s.token, PointFile(str(s.lidar_path), tuple(s.sweeps[: cfg.sweeps_num]),
                                     GroundTruth(s.boxes, s.labels,
                                                 s.num_lidar_pts if len(s.num_lidar_pts) else None)))
            for s in samples]


def from_bag(path: str | Path, topic: str | None = None) -> list[Frame]:
    """Every PointCloud2 message of `topic` (default Autoware's) in a rosbag2 folder, token = its bag time."""
    from cp_debug.data.rosbag import LIDAR_TOPIC, cloud_times

    topic = topic or LIDAR_TOPIC
    return [Frame(str(t), BagMessage(str(path), topic, t)) for t in cloud_times(path, topic)]


def from_folder(path: str | Path) -> list[Frame]:
    """Every point file of a folder (token = file stem), in name order; no ground truth."""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix in POINT_SUFFIXES and f.is_file())
    if not files:
        raise BadInputError(f"--scenes {p}: no info file and no point file ({', '.join(POINT_SUFFIXES)}) in it")
    return [Frame(f.stem, PointFile(str(f))) for f in files]


def from_scenes(scenes: str | Path, cfg: "LidarConfig", data_root: str | Path | None = None,
                lidar_topic: str | None = None, *, task: str = "read") -> list[Frame]:
    """The frames of `scenes`: an info file (or a folder holding infos.pkl), a rosbag2 folder (every cloud of
    `lidar_topic`), else a folder of point files; tokens must not repeat."""
    p = Path(scenes)
    if not p.exists():
        raise BadInputError(f"--scenes {p} does not exist: give an info file, a folder with infos.pkl, a rosbag2 "
                            "folder, or a folder of point files")
    if (p / "metadata.yaml").is_file():  # a rosbag2 folder (sqlite3 or mcap)
        return from_bag(p, lidar_topic)
    if p.is_file() or (p / "infos.pkl").is_file():
        return unique_tokens(from_infos(p, cfg, data_root, task=task), p)
    return unique_tokens(from_folder(p), p)


def unique_tokens(frames: list[Frame], where: str | Path) -> list[Frame]:
    """`frames`, or one BadInputError when a token repeats (results are keyed by token)."""
    tokens = [f.token for f in frames]
    if len(set(tokens)) != len(tokens):
        raise BadInputError(f"{where}: frame tokens repeat; each scan needs its own token (file stem)")
    return frames

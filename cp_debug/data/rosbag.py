"""ROS 2 bags (rosbag2: sqlite3 `.db3` and `.mcap`) through `rosbags`: the clouds a deployed node saw and the
boxes it published, read and written (the messages are decoded and encoded by `ros_messages.py`).

Clouds and objects are paired by header stamp: exact, or the nearest cloud within a tolerance.

A bag is a folder; `write_bag` writes it in a temporary sibling folder and renames it into place, so a failed
write leaves nothing behind. Every unreadable bag, missing topic or topic of the wrong type is one
`BadInputError` line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from cp_debug.data.ros_messages import (DETECTED_OBJECTS, POINTCLOUD2, decode_objects, decode_pointcloud2,
                                        encode_objects, encode_pointcloud2, rosbags, stamp_ns, typestore)
from cp_debug.errors import BadInputError
from cp_debug.lidar.boxes import Detections

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.lidar.space import LidarConfig

# The topics of Autoware's perception launch (autoware_launch: the node's ~/input/pointcloud remapped to the
# concatenated cloud, its ~/output/objects under detection/centerpoint).
LIDAR_TOPIC = "/sensing/lidar/concatenated/pointcloud"
OBJECTS_TOPIC = "/perception/object_recognition/detection/centerpoint/objects"
STORAGES = ("sqlite3", "mcap")
# What a damaged bag raises inside rosbags (sqlite, mcap records, CDR buffers).
_BROKEN = (sqlite3.DatabaseError, struct.error, ValueError, IndexError, KeyError, EOFError, AssertionError, OSError)


@dataclass(frozen=True)
class Cloud:
    """One PointCloud2: header stamp (ns), frame, points (N, 5) float32 x, y, z, intensity, time."""

    stamp_ns: int
    frame_id: str
    points: np.ndarray


@dataclass(frozen=True)
class ObjectsFrame:
    """One DetectedObjects message as boxes; `skipped`: objects of a class the model does not have."""

    stamp_ns: int
    frame_id: str
    detections: Detections
    skipped: int = 0


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class Pairing:
    """Clouds and objects matched by stamp: (cloud index, objects index, |dt| ns); the unpaired by index."""

    pairs: tuple[tuple[int, int, int], ...]
    unpaired_clouds: tuple[int, ...]
    unpaired_objects: tuple[int, ...]
    tolerance_ns: int

    @property
    def exact(self) -> int:
        return sum(1 for p in self.pairs if p[2] == 0)

    def describe(self) -> str:
        tol = f"nearest within {self.tolerance_ns / 1e6:g} ms" if self.tolerance_ns else "exact stamps"
        return (f"{len(self.pairs)} frame(s) paired by header stamp ({tol}; {self.exact} exact), "
                f"{len(self.unpaired_clouds)} cloud(s) and {len(self.unpaired_objects)} objects message(s) unpaired")


# -- bags -------------------------------------------------------------------------------------------------------
def _open(path: Path):
    rosbag2, _ = rosbags()
    if not path.exists():
        raise BadInputError(f"bag {path} does not exist")
    try:
        reader = rosbag2.Reader(path)
        reader.open()
    except (rosbag2.ReaderError, *_BROKEN) as err:
        raise BadInputError(f"{path} is not a readable rosbag2 folder ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else 'damaged'}); give the bag's folder") from None
    return reader


def list_topics(path: str | os.PathLike) -> list[TopicInfo]:
    """The bag's topics with their message types and counts (from its metadata)."""
    reader = _open(Path(path))
    try:
        return [TopicInfo(c.topic, c.msgtype, int(c.msgcount)) for c in reader.connections]
    finally:
        reader.close()


def _connection(reader, path: Path, topic: str, msgtype: str, option: str):
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        have = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "none"
        raise BadInputError(f"bag {path} has no topic {topic}; its topics: {have}. Choose one with {option}")
    wrong = [c.msgtype for c in conns if c.msgtype != msgtype]
    if wrong:
        raise BadInputError(f"bag {path}: topic {topic} carries {wrong[0]}, not {msgtype}; choose "
                            f"another with {option}")
    return conns


@contextlib.contextmanager
def _reading(p: Path):
    """The open reader of bag `p`; a damaged or truncated bag is one BadInputError, and the reader is closed."""
    rosbag2, _ = rosbags()
    reader = _open(p)
    try:
        yield reader
    except (rosbag2.ReaderError, *_BROKEN) as err:
        raise BadInputError(f"bag {p} is damaged or truncated ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from None
    finally:
        reader.close()


def read_bag(path: str | os.PathLike, class_names: Sequence[str], *, lidar_topic: str = LIDAR_TOPIC,
             objects_topic: str | None = OBJECTS_TOPIC) -> tuple[list[Cloud], list[ObjectsFrame]]:
    """Every cloud of `lidar_topic` and every DetectedObjects of `objects_topic` (None: clouds only), in stamp
    order."""
    p = Path(path)
    store = typestore()
    clouds: list[Cloud] = []
    frames: list[ObjectsFrame] = []
    with _reading(p) as reader:
        conns = _connection(reader, p, lidar_topic, POINTCLOUD2, "--lidar-topic")
        if objects_topic is not None:
            conns = conns + _connection(reader, p, objects_topic, DETECTED_OBJECTS, "--objects-topic")
        for conn, _t, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            stamp = stamp_ns(msg.header)
            if conn.msgtype == POINTCLOUD2:
                pts = decode_pointcloud2(msg, f"{p} {conn.topic} at stamp {stamp}")
                clouds.append(Cloud(stamp, msg.header.frame_id, pts))
            else:
                dets, skipped = decode_objects(msg, class_names)
                frames.append(ObjectsFrame(stamp, msg.header.frame_id, dets, skipped))
    if not clouds:
        raise BadInputError(f"bag {p}: topic {lidar_topic} has no message")
    clouds.sort(key=lambda c: c.stamp_ns)
    frames.sort(key=lambda f: f.stamp_ns)
    return clouds, frames


def cloud_times(path: str | os.PathLike, lidar_topic: str = LIDAR_TOPIC) -> list[int]:
    """The bag times (ns) of every message of `lidar_topic`, in order, without decoding a cloud (a sweep's frames:
    each is read alone when its turn comes, `read_cloud_at`)."""
    p = Path(path)
    with _reading(p) as reader:
        conns = _connection(reader, p, lidar_topic, POINTCLOUD2, "--lidar-topic")
        times = [int(t) for _conn, t, _raw in reader.messages(connections=conns)]
    if not times:
        raise BadInputError(f"bag {p}: topic {lidar_topic} has no message")
    return times


def read_cloud_at(path: str | os.PathLike, lidar_topic: str, bag_time_ns: int) -> np.ndarray:
    """The (N, 5) cloud of `lidar_topic` recorded at `bag_time_ns` (rows with NaN/Inf dropped, as the node does)."""
    p = Path(path)
    store = typestore()
    with _reading(p) as reader:
        conns = _connection(reader, p, lidar_topic, POINTCLOUD2, "--lidar-topic")
        for conn, t, raw in reader.messages(connections=conns, start=bag_time_ns, stop=bag_time_ns + 1):
            if int(t) == bag_time_ns:
                pts = decode_pointcloud2(store.deserialize_cdr(raw, conn.msgtype), f"{p} {lidar_topic} at {t}")
                return pts[np.isfinite(pts).all(axis=1)]
    raise BadInputError(f"bag {p}: no {lidar_topic} message at bag time {bag_time_ns}")


def node_points(cloud: np.ndarray, cfg: "LidarConfig", source: str) -> np.ndarray:
    """A bag's (N, 5) cloud as the node feeds it to the model, the one reading of a bag cloud (`sweep --scenes BAG`
    and `replay BAG` alike): rows with NaN/Inf dropped (organised clouds mark missing returns so), then the model's
    columns with the time column set to the key frame's time lag, 0. Autoware's CenterPoint writes each cloud's
    lag (its stamp's distance to the current one) into that column, never the cloud's per-point time field, and
    AWML's LoadPointsFromMultiSweeps sets the key frame's to 0; a per-point `time_stamp` field is not read."""
    from cp_debug.lidar.points import prepare_points

    pts = np.asarray(cloud)
    pts = pts[np.isfinite(pts).all(axis=1)]
    return prepare_points(pts, cfg, source=source, file_layout=True, time_lag=0.0)


def pair_by_stamp(cloud_stamps: Sequence[int], object_stamps: Sequence[int], tolerance_ns: int = 0) -> Pairing:
    """Pair each objects message with the cloud of the same stamp, or the nearest cloud within `tolerance_ns`
    (each cloud used once, nearest pairs first)."""
    cs = np.asarray(cloud_stamps, np.int64)
    cands = []
    for j, s in enumerate(object_stamps):
        if cs.size:
            d = np.abs(cs - int(s))
            for i in np.nonzero(d <= tolerance_ns)[0]:
                cands.append((int(d[i]), int(i), j))
    cands.sort()
    used_c, used_o, pairs = set(), set(), []
    for dt, i, j in cands:
        if i in used_c or j in used_o:
            continue
        used_c.add(i)
        used_o.add(j)
        pairs.append((i, j, dt))
    pairs.sort()
    return Pairing(tuple(pairs), tuple(i for i in range(len(cs)) if i not in used_c),
                   tuple(j for j in range(len(object_stamps)) if j not in used_o), int(tolerance_ns))


def write_bag(path: str | os.PathLike, clouds: Iterable[Cloud], objects: Iterable[tuple[int, Detections]] = (),
              class_names: Sequence[str] = (), *, storage: str = "sqlite3", lidar_topic: str = LIDAR_TOPIC,
              objects_topic: str = OBJECTS_TOPIC, cloud_options: dict | None = None) -> Path:
    """A rosbag2 folder at `path` (which must not exist) with the clouds and (stamp, detections) messages, written
    whole or not at all. `cloud_options` go to `encode_pointcloud2` (endianness, padding, intensity type)."""
    rosbag2, _ = rosbags()
    if storage not in STORAGES:
        raise BadInputError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
    p = Path(path)
    if p.exists():
        raise BadInputError(f"{p} exists; rosbag2 writes a new folder")
    store = typestore()
    plugin = rosbag2.StoragePlugin.MCAP if storage == "mcap" else rosbag2.StoragePlugin.SQLITE3
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=p.parent if str(p.parent) else "."))
    bag = tmp / "bag"
    try:
        with rosbag2.Writer(bag, version=9, storage_plugin=plugin) as writer:
            cc = writer.add_connection(lidar_topic, POINTCLOUD2, typestore=store)
            oc = None
            for c in clouds:
                msg = encode_pointcloud2(c.points, c.stamp_ns, c.frame_id, store=store, **(cloud_options or {}))
                writer.write(cc, c.stamp_ns, store.serialize_cdr(msg, POINTCLOUD2))
            for stamp, dets in objects:
                if oc is None:
                    oc = writer.add_connection(objects_topic, DETECTED_OBJECTS, typestore=store)
                msg = encode_objects(dets, stamp, class_names, store=store)
                writer.write(oc, int(stamp), store.serialize_cdr(msg, DETECTED_OBJECTS))
        os.replace(bag, p)
    except (rosbag2.WriterError, OSError) as err:
        raise BadInputError(f"cannot write bag {p}: {err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return p

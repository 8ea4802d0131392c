"""ROS 2 bags (rosbag2: sqlite3 `.db3` and `.mcap`) through `rosbags`: the clouds a deployed node saw and the
boxes it published, read and written.

- `sensor_msgs/msg/PointCloud2` is decoded by field name (x, y, z, intensity, and a per-point time when present:
  `time_stamp`, `t`, `time` or `timestamp`) with any `point_step`, padding, field type and endianness; the
  result has our 5 columns x, y, z, intensity, time (absent columns are 0).
- `autoware_perception_msgs/msg/DetectedObjects` is registered from the `.msg` text of autoware_msgs. One
  object becomes one box in the decoder's layout [x, y, z_bottom, l, w, h, yaw, vx, vy]: the pose position is
  the box centre (Autoware publishes the head's centre z), the orientation quaternion gives the yaw of the
  box's x axis, `shape.dimensions` are (length, width, height); the score is `existence_probability` (the
  node writes the heatmap score there and probability 1 in the classification), the class is the most
  probable classification. The twist is Autoware's: `linear.x` the speed and `angular.z` twice the angle from
  the heading to the velocity (`box3DToDetectedObject`), so vx, vy = speed * (cos, sin)(yaw + angular.z / 2).
- Clouds and objects are paired by header stamp: exact, or the nearest cloud within a tolerance.

A bag is a folder; `write_bag` writes it in a temporary sibling folder and renames it into place, so a failed
write leaves nothing behind. Every unreadable bag, missing topic or topic of the wrong type is one
`BadInputError` line.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sqlite3
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cp_debug.errors import BackendUnavailableError, BadInputError
from cp_debug.models.centerpoint.decode import Detections

# The topics of Autoware's perception launch (autoware_launch: the node's ~/input/pointcloud remapped to the
# concatenated cloud, its ~/output/objects under detection/centerpoint).
LIDAR_TOPIC = "/sensing/lidar/concatenated/pointcloud"
OBJECTS_TOPIC = "/perception/object_recognition/detection/centerpoint/objects"
POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
DETECTED_OBJECTS = "autoware_perception_msgs/msg/DetectedObjects"
STORAGES = ("sqlite3", "mcap")
INSTALL_HINT = "reading ROS 2 bags needs the rosbags library: pip install 'cp-debug[ros]'"

# autoware_msgs/autoware_perception_msgs/msg/*.msg (constants kept: they are part of the definition hash).
MSG_DEFINITIONS = {
    "autoware_perception_msgs/msg/ObjectClassification": """
uint8 UNKNOWN = 0
uint8 CAR = 1
uint8 TRUCK = 2
uint8 BUS = 3
uint8 TRAILER = 4
uint8 MOTORCYCLE = 5
uint8 BICYCLE = 6
uint8 PEDESTRIAN = 7
uint8 ANIMAL = 8
uint8 HAZARD = 9
uint8 OVER_DRIVABLE = 10
uint8 UNDER_DRIVABLE = 11
uint8 label
float32 probability
""",
    "autoware_perception_msgs/msg/Shape": """
uint8 BOUNDING_BOX=0
uint8 CYLINDER=1
uint8 POLYGON=2
uint8 type
geometry_msgs/Polygon footprint
geometry_msgs/Vector3 dimensions
""",
    "autoware_perception_msgs/msg/DetectedObjectKinematics": """
uint8 UNAVAILABLE=0
uint8 SIGN_UNKNOWN=1
uint8 AVAILABLE=2
geometry_msgs/PoseWithCovariance pose_with_covariance
bool has_position_covariance
uint8 orientation_availability
geometry_msgs/TwistWithCovariance twist_with_covariance
bool has_twist
bool has_twist_covariance
""",
    "autoware_perception_msgs/msg/DetectedObject": """
float32 existence_probability
ObjectClassification[] classification
DetectedObjectKinematics kinematics
Shape shape
""",
    "autoware_perception_msgs/msg/DetectedObjects": """
std_msgs/Header header
DetectedObject[] objects
""",
}
# ObjectClassification labels by nuScenes/our class name.
AUTOWARE_LABELS = {"car": 1, "truck": 2, "bus": 3, "trailer": 4, "motorcycle": 5, "bicycle": 6, "pedestrian": 7}
_PF_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}  # sensor_msgs/PointField
_TIME_FIELDS = ("time_stamp", "t", "time", "timestamp")
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


def _rosbags():
    try:
        import rosbags.rosbag2 as rosbag2
        import rosbags.typesys as typesys
    except ImportError as err:
        raise BackendUnavailableError(f"{INSTALL_HINT} ({err})") from None
    return rosbag2, typesys


def typestore():
    """ROS 2 Humble's types plus autoware_perception_msgs, registered from their `.msg` text."""
    _, typesys = _rosbags()
    store = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    types = {}
    for name, text in MSG_DEFINITIONS.items():
        types.update(typesys.get_types_from_msg(text, name))
    store.register(types)
    return store


# -- PointCloud2 ------------------------------------------------------------------------------------------------
def decode_pointcloud2(msg, source: str = "PointCloud2") -> np.ndarray:
    """(N, 5) float32 x, y, z, intensity, time of a PointCloud2 message (fields looked up by name)."""
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in ("x", "y", "z") if n not in fields]
    if missing:
        raise BadInputError(f"{source}: the cloud has no field {', '.join(missing)} (fields: {', '.join(fields)})")
    n = int(msg.width) * int(msg.height)
    step = int(msg.point_step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if step <= 0 or int(msg.row_step) < step * int(msg.width) or data.size < int(msg.row_step) * int(msg.height):
        raise BadInputError(f"{source}: {data.size} data bytes do not hold {msg.height} row(s) of {msg.width} "
                            f"points of {step} bytes (row_step {msg.row_step})")
    rows = data[: int(msg.row_step) * int(msg.height)].reshape(int(msg.height), int(msg.row_step))
    flat = np.ascontiguousarray(rows[:, : step * int(msg.width)]).reshape(-1)
    order = ">" if msg.is_bigendian else "<"
    out = np.zeros((n, 5), np.float32)
    time_name = next((t for t in _TIME_FIELDS if t in fields), None)
    for col, name in enumerate(("x", "y", "z", "intensity", time_name)):
        f = fields.get(name) if name else None
        if f is None:
            continue
        kind = _PF_TYPES.get(int(f.datatype))
        if kind is None or int(f.offset) + np.dtype(kind).itemsize > step:
            raise BadInputError(f"{source}: field {name!r} has datatype {f.datatype} at offset {f.offset}, which "
                                f"does not fit a point of {step} bytes")
        dt = np.dtype({"names": [name], "formats": [order + kind], "offsets": [int(f.offset)], "itemsize": step})
        out[:, col] = flat.view(dt)[name].astype(np.float32)
    return out


def encode_pointcloud2(points: np.ndarray, stamp_ns: int, frame_id: str = "base_link", *, store=None,
                       big_endian: bool = False, padding: int = 0, intensity_type: str = "f4", with_time: bool = True):
    """A PointCloud2 of (N, >=4) points: float32 x, y, z, intensity as `intensity_type` ("f4" or "u1"), a float32
    `time_stamp` when `with_time`, then `padding` unused bytes per point (as drivers lay clouds out)."""
    store = store or typestore()
    t = store.types
    pts = np.asarray(points, dtype=np.float32)
    names = ["x", "y", "z", "intensity"] + (["time_stamp"] if with_time else [])
    kinds = ["f4", "f4", "f4", intensity_type] + (["f4"] if with_time else [])
    codes = {v: k for k, v in _PF_TYPES.items()}
    offsets, off = [], 0
    for k in kinds:
        offsets.append(off)
        off += np.dtype(k).itemsize
    step = off + int(padding)
    order = ">" if big_endian else "<"
    dt = np.dtype({"names": names, "formats": [order + k for k in kinds], "offsets": offsets, "itemsize": step})
    rec = np.zeros(len(pts), dtype=dt)
    for i, name in enumerate(names):
        col = pts[:, i] if i < pts.shape[1] else np.zeros(len(pts), np.float32)
        rec[name] = np.clip(np.round(col), 0, 255) if kinds[i] == "u1" else col
    fields = [t["sensor_msgs/msg/PointField"](name=nm, offset=o, datatype=codes[k], count=1)
              for nm, o, k in zip(names, offsets, kinds)]
    return t[POINTCLOUD2](header=_header(t, stamp_ns, frame_id), height=1, width=len(pts), fields=fields,
                          is_bigendian=big_endian, point_step=step, row_step=step * len(pts),
                          data=rec.view(np.uint8).reshape(-1).copy(), is_dense=True)


def _header(t, stamp_ns: int, frame_id: str):
    stamp = t["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))
    return t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _stamp(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# -- DetectedObjects --------------------------------------------------------------------------------------------
def _yaw(q) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def decode_objects(msg, class_names: Sequence[str]) -> tuple[Detections, int]:
    """(boxes in the decoder's layout, objects skipped because their class is not one of `class_names`)."""
    index = {c: i for i, c in enumerate(class_names)}
    by_label = {v: index[name] for name, v in AUTOWARE_LABELS.items() if name in index}
    boxes, scores, labels, skipped = [], [], [], 0
    for obj in msg.objects:
        if not len(obj.classification):
            skipped += 1
            continue
        best = max(obj.classification, key=lambda c: c.probability)
        label = by_label.get(int(best.label))
        if label is None:
            skipped += 1
            continue
        k = obj.kinematics
        p, q = k.pose_with_covariance.pose.position, k.pose_with_covariance.pose.orientation
        d = obj.shape.dimensions
        yaw = _yaw(q)
        vx = vy = 0.0
        if k.has_twist:
            tw = k.twist_with_covariance.twist
            heading = yaw + float(tw.angular.z) / 2.0
            vx, vy = float(tw.linear.x) * math.cos(heading), float(tw.linear.x) * math.sin(heading)
        boxes.append([p.x, p.y, p.z - d.z / 2.0, d.x, d.y, d.z, yaw, vx, vy])
        scores.append(obj.existence_probability)
        labels.append(label)
    if not boxes:
        return Detections.empty(tuple(class_names)), skipped
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return Detections(np.asarray(boxes, np.float32)[order], np.asarray(scores, np.float32)[order],
                      np.asarray(labels, np.int64)[order], tuple(class_names)), skipped


def encode_objects(dets: Detections, stamp_ns: int, class_names: Sequence[str], frame_id: str = "base_link", *,
                   store=None):
    """A DetectedObjects message of `dets`, laid out as Autoware's `box3DToDetectedObject` writes it."""
    store = store or typestore()
    t = store.types
    g = "geometry_msgs/msg/"
    objs = []
    for i in range(len(dets)):
        x, y, zb, length, width, height, yaw, vx, vy = (float(v) for v in dets.boxes[i])
        pose = t[g + "Pose"](position=t[g + "Point"](x=x, y=y, z=zb + height / 2.0),
                             orientation=t[g + "Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)))
        twist = t[g + "Twist"](linear=t[g + "Vector3"](x=math.hypot(vx, vy), y=0.0, z=0.0),
                               angular=t[g + "Vector3"](x=0.0, y=0.0, z=2.0 * (math.atan2(vy, vx) - yaw)))
        kin = t["autoware_perception_msgs/msg/DetectedObjectKinematics"](
            pose_with_covariance=t[g + "PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
            has_position_covariance=False, orientation_availability=1,
            twist_with_covariance=t[g + "TwistWithCovariance"](twist=twist, covariance=np.zeros(36)),
            has_twist=True, has_twist_covariance=False)
        cls = t["autoware_perception_msgs/msg/ObjectClassification"](
            label=AUTOWARE_LABELS.get(class_names[int(dets.labels[i])], 0), probability=1.0)
        shape = t["autoware_perception_msgs/msg/Shape"](
            type=0, footprint=t[g + "Polygon"](points=[]), dimensions=t[g + "Vector3"](x=length, y=width, z=height))
        objs.append(t["autoware_perception_msgs/msg/DetectedObject"](
            existence_probability=float(dets.scores[i]), classification=[cls], kinematics=kin, shape=shape))
    return t[DETECTED_OBJECTS](header=_header(t, stamp_ns, frame_id), objects=objs)


# -- bags -------------------------------------------------------------------------------------------------------
def _open(path: Path):
    rosbag2, _ = _rosbags()
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
    rosbag2, _ = _rosbags()
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
            stamp = _stamp(msg.header)
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
    rosbag2, _ = _rosbags()
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

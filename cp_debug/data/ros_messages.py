"""ROS 2 messages as numpy: `sensor_msgs/msg/PointCloud2` and Autoware's `DetectedObjects`, decoded and encoded
(the bag files themselves are `rosbag.py`'s).

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
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from cp_debug.errors import BadInputError
from cp_debug.lidar.boxes import Detections

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
DETECTED_OBJECTS = "autoware_perception_msgs/msg/DetectedObjects"
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


def rosbags():
    """(rosbags.rosbag2, rosbags.typesys), or one BackendUnavailableError saying how to install them."""
    from cp_debug.imports import optional

    return optional("rosbags.rosbag2", INSTALL_HINT), optional("rosbags.typesys", INSTALL_HINT)


def typestore():
    """ROS 2 Humble's types plus autoware_perception_msgs, registered from their `.msg` text."""
    _, typesys = rosbags()
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
    return t[POINTCLOUD2](header=header(t, stamp_ns, frame_id), height=1, width=len(pts), fields=fields,
                          is_bigendian=big_endian, point_step=step, row_step=step * len(pts),
                          data=rec.view(np.uint8).reshape(-1).copy(), is_dense=True)


def header(t, stamp_ns: int, frame_id: str):
    """A std_msgs/Header of `stamp_ns` (types `t` of a typestore)."""
    stamp = t["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))
    return t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def stamp_ns(header) -> int:
    """A header's stamp in nanoseconds."""
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
    return t[DETECTED_OBJECTS](header=header(t, stamp_ns, frame_id), objects=objs)

"""ROS 2 bags written with rosbags' own writer (sqlite3 and mcap): clouds and Autoware DetectedObjects read back
exactly, pairing by stamp, and one clear line for each broken bag."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

pytest.importorskip("rosbags.rosbag2")

from cp_debug.data.ros_messages import (DETECTED_OBJECTS, POINTCLOUD2, decode_pointcloud2,  # noqa: E402
                                        encode_pointcloud2, typestore)
from cp_debug.data.rosbag import (LIDAR_TOPIC, OBJECTS_TOPIC, STORAGES, Cloud, list_topics,  # noqa: E402
                                  pair_by_stamp, read_bag, write_bag)
from cp_debug.data.scenes import make_scene  # noqa: E402
from cp_debug.errors import BadInputError  # noqa: E402
from cp_debug.lidar.space import CLASS_NAMES
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.lidar.boxes import Detections

S = 1_000_000_000


def _dets() -> Detections:
    boxes = np.array([[10.0, -3.0, -1.8, 4.6, 1.9, 1.6, 0.7, 3.0, -1.0],
                      [-5.0, 8.0, -1.9, 0.7, 0.6, 1.75, -2.9, 0.0, 0.0],
                      [20.0, 2.0, -1.7, 11.0, 2.9, 3.3, math.pi / 2, 0.0, 5.0]], np.float32)
    return Detections(boxes, np.array([0.9, 0.45, 0.2], np.float32), np.array([0, 4, 2]), CLASS_NAMES)


@pytest.fixture(scope="module")
def cloud() -> np.ndarray:
    return make_scene(get_preset("tiny"), 1_000_000).points[::20]


@pytest.mark.parametrize("storage", STORAGES)
def test_clouds_and_objects_round_trip_in_both_storages(tmp_path, cloud, storage):
    clouds = [Cloud(S + 5, "base_link", cloud), Cloud(2 * S, "base_link", cloud[:100])]
    bag = write_bag(tmp_path / "b", clouds, [(S + 5, _dets())], CLASS_NAMES, storage=storage)
    assert sorted(p.suffix for p in bag.iterdir()) == sorted([".yaml", ".db3" if storage == "sqlite3" else ".mcap"])
    assert [(t.name, t.msgtype, t.count) for t in list_topics(bag)] == [
        (LIDAR_TOPIC, POINTCLOUD2, 2), (OBJECTS_TOPIC, DETECTED_OBJECTS, 1)]
    got, frames = read_bag(bag, CLASS_NAMES)
    assert [c.stamp_ns for c in got] == [S + 5, 2 * S]
    np.testing.assert_array_equal(got[0].points, cloud)  # x, y, z, intensity and time_stamp, float32 exact
    d = frames[0].detections
    np.testing.assert_allclose(d.boxes, _dets().boxes, atol=1e-5)
    np.testing.assert_array_equal(d.labels, [0, 4, 2])
    np.testing.assert_allclose(d.scores, [0.9, 0.45, 0.2])


def test_pointcloud2_fields_by_name_any_step_padding_and_endianness(cloud):
    store = typestore()
    for opts in (dict(big_endian=True), dict(padding=7), dict(intensity_type="u1", with_time=False, padding=1)):
        msg = encode_pointcloud2(cloud, S, store=store, **opts)
        pts = decode_pointcloud2(msg)
        np.testing.assert_array_equal(pts[:, :3], cloud[:, :3])
        want_i = np.clip(np.round(cloud[:, 3]), 0, 255) if opts.get("intensity_type") == "u1" else cloud[:, 3]
        np.testing.assert_array_equal(pts[:, 3], want_i)
        assert msg.point_step == (13 if "with_time" in opts else 20) + opts.get("padding", 0)
    # Fields in another order (intensity first) are found by name, not by position.
    t = store.types
    fields = [t["sensor_msgs/msg/PointField"](name=n, offset=o, datatype=7, count=1)
              for n, o in (("intensity", 0), ("x", 4), ("y", 8), ("z", 12))]
    raw = np.ascontiguousarray(cloud[:, [3, 0, 1, 2]], dtype="<f4")
    msg = t[POINTCLOUD2](header=msg.header, height=1, width=len(raw), fields=fields, is_bigendian=False, point_step=16,
                         row_step=16 * len(raw), data=raw.view(np.uint8).reshape(-1), is_dense=True)
    np.testing.assert_array_equal(decode_pointcloud2(msg)[:, :4], cloud[:, :4])


def test_pairing_exact_and_nearest_within_a_tolerance():
    p = pair_by_stamp([0, 100 * 10**6, 200 * 10**6], [100 * 10**6, 203 * 10**6, 500 * 10**6], 0)
    assert p.pairs == ((1, 0, 0),) and p.unpaired_objects == (1, 2) and p.unpaired_clouds == (0, 2)
    p = pair_by_stamp([0, 100 * 10**6, 200 * 10**6], [100 * 10**6, 203 * 10**6, 500 * 10**6], 5 * 10**6)
    assert p.pairs == ((1, 0, 0), (2, 1, 3 * 10**6)) and p.unpaired_objects == (2,)
    assert "nearest within 5 ms" in p.describe() and "1 objects message(s) unpaired" in p.describe()


@pytest.mark.parametrize("storage", STORAGES)
def test_broken_bags_are_one_line(tmp_path, cloud, storage):
    bag = write_bag(tmp_path / "b", [Cloud(S, "base_link", cloud)], [(S, _dets())], CLASS_NAMES, storage=storage)
    with pytest.raises(BadInputError, match="has no topic /nope.*--lidar-topic"):
        read_bag(bag, CLASS_NAMES, lidar_topic="/nope")
    with pytest.raises(BadInputError, match=f"topic {OBJECTS_TOPIC} carries {DETECTED_OBJECTS}, not {POINTCLOUD2}"):
        read_bag(bag, CLASS_NAMES, lidar_topic=OBJECTS_TOPIC)
    data = next(p for p in bag.iterdir() if p.suffix != ".yaml")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # truncated mid-recording
    with pytest.raises(BadInputError) as err:
        read_bag(bag, CLASS_NAMES)
    assert "\n" not in str(err.value) and str(bag) in str(err.value)
    with pytest.raises(BadInputError, match="does not exist"):
        read_bag(tmp_path / "missing", CLASS_NAMES)


def test_a_failed_write_leaves_nothing(tmp_path, cloud):
    def clouds():
        yield Cloud(S, "base_link", cloud)
        raise BadInputError("the recording stopped")

    with pytest.raises(BadInputError, match="stopped"):
        write_bag(tmp_path / "b", clouds(), [], CLASS_NAMES)
    assert list(tmp_path.iterdir()) == []
    write_bag(tmp_path / "b", [Cloud(S, "base_link", cloud)])
    with pytest.raises(BadInputError, match="exists"):
        write_bag(tmp_path / "b", [Cloud(S, "base_link", cloud)])


def test_missing_rosbags_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    from cp_debug.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "rosbags.rosbag2", None)  # as if rosbags were not installed
    with pytest.raises(BackendUnavailableError, match=r"pip install 'cp-debug\[ros\]'"):
        list_topics(tmp_path)


def test_a_bag_is_a_sweeps_frames_each_cloud_read_alone(tmp_path, cloud):
    """`cpdebug sweep --scenes BAG`: one frame per cloud of the lidar topic (token = bag time), each read by
    itself when its turn comes, in the model's columns; the objects topic is not needed."""
    from cp_debug.data.frames import from_scenes

    cfg = get_preset("tiny")
    second = cloud[::2].copy()
    second[0, :3] = np.nan  # an organised cloud's missing return: dropped, as the node drops it
    bag = write_bag(tmp_path / "b", [Cloud(S, "base_link", cloud), Cloud(S + 10**8, "base_link", second)],
                    storage="mcap")
    frames = from_scenes(bag, cfg)
    assert [f.token for f in frames] == [str(S), str(S + 10**8)]
    scan = frames[1].load(cfg)
    pts = scan.points
    assert scan.truth is None and frames[1].truth(cfg) is None and pts.shape == (len(second) - 1, cfg.in_channels)
    np.testing.assert_allclose(pts[:, :3], second[1:, :3], atol=1e-6)
    with pytest.raises(BadInputError, match="no topic /lidar"):
        from_scenes(bag, cfg, lidar_topic="/lidar")

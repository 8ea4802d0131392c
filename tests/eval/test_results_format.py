"""nuScenes submission files: exact round trip of our boxes, and one clear error per format problem."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cp_debug.errors import BadInputError
from cp_debug.eval.boxes import SampleBoxes, box_from_nuscenes, box_to_nuscenes, quaternion_to_yaw, yaw_to_quaternion
from cp_debug.eval.results_format import parse_results, read_results, to_results, write_results
from cp_debug.lidar.space import CLASS_NAMES
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.lidar.synthetic import synthetic_scene


@pytest.fixture(scope="module")
def dets():
    cfg = get_preset("tiny")
    out = {}
    for seed in (3, 4):
        s = synthetic_scene(seed, cfg)
        scores = np.linspace(0.95, 0.2, len(s.boxes))
        out[f"scene_{seed:07d}"] = SampleBoxes(s.boxes, s.labels, scores)
    return out


def test_round_trip_is_exact(tmp_path, dets):
    path = write_results(tmp_path / "r.json", dets, CLASS_NAMES)
    back, meta, absent = read_results(path, CLASS_NAMES, list(dets))
    assert meta["use_lidar"] is True and absent == []
    for token, sb in dets.items():
        got = back[token]
        np.testing.assert_array_equal(got.labels, sb.labels)
        np.testing.assert_allclose(got.scores, sb.scores, atol=1e-12)
        np.testing.assert_allclose(got.boxes[:, :6], sb.boxes[:, :6], atol=1e-5)
        np.testing.assert_allclose(got.boxes[:, 7:], sb.boxes[:, 7:], atol=1e-6)
        dyaw = (got.boxes[:, 6] - sb.boxes[:, 6] + np.pi) % (2 * np.pi) - np.pi
        np.testing.assert_allclose(dyaw, 0.0, atol=1e-6)


def test_layout_matches_nuscenes_conventions():
    """z bottom -> centre, [l, w, h] -> [w, l, h], yaw -> pyquaternion's quaternion about z."""
    pyquaternion = pytest.importorskip("pyquaternion")
    box = np.array([1.0, 2.0, -1.5, 4.5, 1.9, 1.6, 2.5, 3.0, -1.0])
    nb = box_to_nuscenes(box)
    assert nb["translation"] == pytest.approx([1.0, 2.0, -0.7])
    assert nb["size"] == pytest.approx([1.9, 4.5, 1.6])
    q = pyquaternion.Quaternion(axis=[0, 0, 1], radians=2.5)
    assert nb["rotation"] == pytest.approx(list(q.elements))
    # nuscenes-devkit's own yaw of the quaternion (rotated x axis), for any quaternion about z
    for yaw in (-3.0, -1.0, 0.0, 0.7, 3.1):
        qq = pyquaternion.Quaternion(axis=[0, 0, 1], radians=yaw)
        v = qq.rotate(np.array([1.0, 0.0, 0.0]))
        assert quaternion_to_yaw(qq.elements) == pytest.approx(math.atan2(v[1], v[0]), abs=1e-12)
        assert quaternion_to_yaw(yaw_to_quaternion(yaw)) == pytest.approx(yaw, abs=1e-12)
    np.testing.assert_allclose(box_from_nuscenes(**nb), box, atol=1e-12)


def _one_box(**changes):
    rec = {"sample_token": "s1", "translation": [1, 2, 0.5], "size": [2, 4, 1.5], "rotation": [1, 0, 0, 0],
           "velocity": [0, 0], "detection_name": "car", "detection_score": 0.5, "attribute_name": ""}
    rec.update(changes)
    for k, v in list(rec.items()):
        if v is KeyError:
            del rec[k]
    return {"meta": {}, "results": {"s1": [rec]}}


@pytest.mark.parametrize("obj, message", [
    ([], "top level is a list"),
    ({"results": {}}, "missing top-level key 'meta'"),
    ({"meta": {}, "results": []}, "'results' must be an object"),
    ({"meta": {}, "results": {"s1": {}}}, "must be a list of boxes"),
    (_one_box(size=KeyError), "lacks key(s) size"),
    (_one_box(detection_score="0.5"), "'detection_score' must be a number"),
    (_one_box(detection_score=float("nan")), "'detection_score' must be a number"),
    (_one_box(detection_name="van"), "unknown detection_name 'van'"),
    (_one_box(translation=[1, 2]), "'translation' must be a list of 3 numbers"),
    (_one_box(rotation=[1, 0, 0, 1]), "not a unit quaternion"),
    (_one_box(size=[2, 0, 1]), "three positive lengths"),
    (_one_box(sample_token="s2"), "differs from its results key"),
])
def test_each_format_error_is_one_clear_line(obj, message):
    with pytest.raises(BadInputError) as err:
        parse_results(obj, CLASS_NAMES, "r.json")
    text = str(err.value)
    assert message in text and "\n" not in text


def test_tokens_and_scores(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_one_box(detection_score=4.2)))  # a logit: not a format error
    dets, _, absent = read_results(path, CLASS_NAMES, ["s1", "s9"])
    assert dets["s1"].scores[0] == 4.2 and absent == ["s9"]
    with pytest.raises(BadInputError, match="match no scene"):
        read_results(path, CLASS_NAMES, ["s7"])
    path.write_text(json.dumps({"meta": {}, "results": {}}))
    with pytest.raises(BadInputError, match="no entry for any"):
        read_results(path, CLASS_NAMES, ["s1"])
    path.write_text("{not json")
    with pytest.raises(BadInputError, match="is not JSON"):
        read_results(path, CLASS_NAMES, ["s1"])
    big = {"meta": {}, "results": {"s1": _one_box()["results"]["s1"] * 501}}
    with pytest.raises(BadInputError, match="at most 500"):
        parse_results(big, CLASS_NAMES)


def test_to_results_keeps_ground_truth_without_scores():
    sb = SampleBoxes(np.array([[0, 0, 0, 4, 2, 1.5, 0, 0, 0]]), np.array([0]))
    rec = to_results({"t": sb}, CLASS_NAMES)["results"]["t"][0]
    assert rec["detection_score"] == -1.0 and rec["detection_name"] == "car"

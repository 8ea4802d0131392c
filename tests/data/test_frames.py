"""One frame (`data.frames`): every source kind loads its points and typed ground truth; held-out and calibration
frames are the same on every call; a sweep's frame reaches bisect without a temporary file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cp_debug.data.frames import (CALIBRATION_SEED_OFFSET, BagMessage, Frame, GroundTruth, HeldOutSet, InMemory,
                                  ModelScan, PointFile, SceneSeed, calibration, from_infos, from_scenes, held_out,
                                  points_of)
from cp_debug.data.point_files import load_point_array, load_point_file, load_points
from cp_debug.data.scene_set import write_scene_set
from cp_debug.data.scenes import HELDOUT_SEED_BASE, make_scene, scene_token
from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.lidar.points import prepare_points
from cp_debug.lidar.synthetic import synthetic_scene

TINY = get_preset("tiny")  # use_dim x, y, z, time: a 5-column scan is cut to 4 model columns


def test_a_seed_frame_is_its_scene_with_typed_ground_truth():
    (frame,) = held_out(1)
    assert frame == Frame(scene_token(HELDOUT_SEED_BASE), SceneSeed(HELDOUT_SEED_BASE))
    scan, scene = frame.load(TINY), make_scene(TINY, HELDOUT_SEED_BASE)
    assert np.array_equal(scan.points, scene.points) and scan.points.shape[1] == 5  # as the pipeline takes it
    truth = scan.truth
    assert isinstance(truth, GroundTruth) and truth.num_points is None
    assert truth.boxes.dtype == np.float64 and truth.boxes.shape == (len(scene.boxes), 9)
    assert np.array_equal(truth.boxes, scene.boxes.astype(np.float64)) and np.array_equal(truth.labels, scene.labels)
    assert np.array_equal(frame.truth(TINY).boxes, truth.boxes)


def test_info_file_frames_of_a_written_scene_folder_read_points_and_truth(tmp_path):
    info = write_scene_set(TINY, tmp_path / "set", [3, 4])  # what `cpdebug scenes` writes
    frames = from_infos(info, TINY)
    assert [f.token for f in frames] == [scene_token(3), scene_token(4)]
    same = from_scenes(tmp_path / "set", TINY)  # the folder holding infos.pkl: the same frames
    assert [(f.token, f.source.path) for f in same] == [(f.token, f.source.path) for f in frames]
    for seed, f in zip((3, 4), frames):
        assert isinstance(f.source, PointFile) and f.source.path.endswith(f"{scene_token(seed)}.pcd.bin")
        scene = make_scene(TINY, seed)
        scan = f.load(TINY)  # the model's columns of the written file, cropped to the range
        assert np.array_equal(scan.points, load_points(f.source.path, TINY))
        assert scan.points.shape[1] == TINY.in_channels
        np.testing.assert_allclose(scan.truth.boxes, scene.boxes, rtol=0, atol=1e-5)
        assert np.array_equal(scan.truth.labels, scene.labels)
        assert scan.truth.num_points is not None and np.all(scan.truth.num_points >= 5)
        assert f.truth(TINY) is f.source.ground_truth  # the truth alone reads no point file
    assert len(from_infos(info, TINY, n=1)) == 1


def test_a_folder_of_point_files_and_its_errors(tmp_path):
    pts = make_scene(TINY, 5).points
    np.save(tmp_path / "b.npy", pts)
    pts.tofile(tmp_path / "a.bin")
    frames = from_scenes(tmp_path, TINY)
    assert [f.token for f in frames] == ["a", "b"]
    a, b = (f.load(TINY) for f in frames)
    assert a.truth is None and np.array_equal(a.points, b.points)
    assert np.array_equal(a.points, load_point_file(tmp_path / "a.bin", TINY).points)
    pts.tofile(tmp_path / "b.bin")
    with pytest.raises(BadInputError, match="tokens repeat"):
        from_scenes(tmp_path, TINY)
    with pytest.raises(BadInputError, match="does not exist"):
        from_scenes(tmp_path / "nope", TINY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no info file and no point file"):
        from_scenes(tmp_path / "empty", TINY)


def test_an_info_file_without_samples_is_one_line(tmp_path):
    (tmp_path / "infos.pkl").write_bytes(pickle.dumps({"data_list": []}))
    with pytest.raises(BadInputError, match="lists no sample; nothing to evaluate"):
        from_infos(tmp_path, TINY, task="evaluate")


def test_held_out_sets_are_deterministic_and_named_by_their_seed_range():
    a, b = HeldOutSet.load(TINY, 2, first=3), HeldOutSet.load(TINY, 2, first=3)
    assert a.to_json() == {"kind": "heldout_synthetic", "first": 3, "n": 2,
                           "tokens": [scene_token(HELDOUT_SEED_BASE + 3), scene_token(HELDOUT_SEED_BASE + 4)]}
    assert len(a) == 2 and a.tokens == b.tokens
    assert all(isinstance(f.source, InMemory) for f in a.frames)  # loaded once: experiments reuse the points
    for fa, fb, lazy in zip(a.frames, b.frames, held_out(2, first=3)):
        assert np.array_equal(fa.load(TINY).points, fb.load(TINY).points)
        assert np.array_equal(fa.load(TINY).points, lazy.load(TINY).points)
    assert held_out(3)[1:] == held_out(2, first=1)
    with pytest.raises(BadInputError, match="at least 1"):
        held_out(0)
    with pytest.raises(BadInputError, match=">= 0"):
        held_out(1, first=-1)


def test_calibration_frames_keep_each_pool_of_seeds():
    training = calibration(TINY, 3)  # PTQ's: training seeds 0..n-1
    assert [f.source.seed for f in training] == [0, 1, 2] and len(calibration(TINY, None)) == 100
    far = calibration(TINY, 2, held_out_seeds=True)  # the INT8 runners': held-out seeds far past the evaluated
    base = HELDOUT_SEED_BASE + CALIBRATION_SEED_OFFSET
    assert [f.source.seed for f in far] == [base, base + 1]
    skipped = calibration(TINY, 2, held_out_seeds=True, exclude=[scene_token(base)])
    assert [f.source.seed for f in skipped] == [base + 1, base + 2]
    again = list(points_of(calibration(TINY, 2, held_out_seeds=True), TINY))
    assert all(np.array_equal(p, q) for p, q in zip(points_of(far, TINY), again))
    with pytest.raises(BadInputError, match="--calib-n"):
        calibration(TINY, 0)


def test_calibration_from_an_info_file_takes_its_first_samples(tmp_path):
    info = write_scene_set(TINY, tmp_path / "set", [5, 6, 7])
    assert [f.token for f in calibration(TINY, 2, infos=info)] == [scene_token(5), scene_token(6)]
    assert len(calibration(TINY, None, infos=info.parent)) == 3


def test_the_model_scan_is_bisects_default_input():
    source = ModelScan(4)
    scan = Frame("model", source).load(TINY)
    scene = synthetic_scene(4, TINY)
    assert np.array_equal(scan.points, scene.points) and np.array_equal(scan.truth.labels, scene.labels)
    assert source.describe() == "synthetic scene (seed 4)"


def test_in_memory_frames_give_their_scan_back():
    frame = held_out(1)[0]
    kept = frame.in_memory(TINY)
    assert kept.token == frame.token and kept.in_memory(TINY) is kept
    assert kept.load(TINY) is kept.load(TINY)


def test_a_bag_message_frame_is_lazy():
    frame = Frame("1", BagMessage("/no/such/bag", "/lidar", 1))  # building it reads nothing
    assert frame.truth(TINY) is None


def test_an_array_reads_as_its_saved_npy_file(tmp_path):
    """A sweep's frame goes to bisect in memory: the same points and facts as the .npy it used to be saved as."""
    for points in (make_scene(TINY, 9).points, prepare_points(make_scene(TINY, 9).points, TINY, file_layout=True)):
        np.save(tmp_path / "p.npy", points)
        file = load_point_file(tmp_path / "p.npy", TINY)
        mem = load_point_array(points, TINY, "sweep frame x")
        assert np.array_equal(file.points, mem.points)
        assert (mem.source, mem.file_format) == ("sweep frame x", "array")
        same = ("load_dim", "use_dim", "columns", "zero_filled", "points_read", "non_finite_dropped",
                "out_of_range_dropped", "warnings")
        assert {k: getattr(file, k) for k in same} == {k: getattr(mem, k) for k in same}

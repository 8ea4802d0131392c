from __future__ import annotations

import numpy as np
import pytest

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.data.point_files import load_points
from cp_debug.lidar.points import prepare_points

BASE = get_preset("awml-base")
J6 = get_preset("awml-j6gen2")


def _pts(n=100, cols=5, seed=0):
    """Points inside every preset's range (z -3..5 m), so none is dropped by the range filter."""
    pts = np.random.default_rng(seed).uniform(-10, 10, (n, cols)).astype(np.float32)
    pts[:, 2:3] /= 5
    return pts


def test_bin_five_columns_to_use_dim(tmp_path):
    pts = _pts()
    pts.tofile(tmp_path / "a.bin")
    got = load_points(tmp_path / "a.bin", BASE)
    assert got.shape == (100, 4) and got.dtype == np.float32
    np.testing.assert_array_equal(got[:, :3], pts[:, :3])
    assert (got[:, 3] == 0).all()  # column 4 -> key-frame time lag 0, as AWML
    keep = load_points(tmp_path / "a.bin", BASE, time_lag=None)
    np.testing.assert_array_equal(keep[:, 3], pts[:, 4])
    j6 = load_points(tmp_path / "a.bin", J6)
    assert j6.shape == (100, 5)
    np.testing.assert_array_equal(j6[:, 3], pts[:, 3])


def test_npy_npz_and_in_channel_arrays(tmp_path):
    pts4 = _pts(cols=4)
    np.save(tmp_path / "a.npy", pts4)
    np.testing.assert_array_equal(load_points(tmp_path / "a.npy", BASE), pts4)
    np.savez(tmp_path / "b.npz", points=_pts().astype(np.float64))
    assert load_points(tmp_path / "b.npz", BASE).shape == (100, 4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: np.save(p.with_suffix(".npy"), _pts(cols=2)), "2 column"),
        (lambda p: p.with_suffix(".bin").write_bytes(b"\x00" * 30), "30 bytes, which fits no float32 layout"),
        (lambda p: p.with_suffix(".bin").write_bytes(b""), "empty"),
        (lambda p: p.with_suffix(".npy").write_bytes(b"garbage, not numpy"), "not a readable .npy"),
        (lambda p: p.with_suffix(".npz").write_bytes(b"PK garbage"), "not a readable .npz"),
        (lambda p: np.savez(p.with_suffix(".npz"), other=_pts()), "no array named 'points'"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((0, 5), np.float32)), "no points"),
        (lambda p: p.with_suffix(".pcd").write_bytes(b"x"), "not a PCD file"),
        (lambda p: p.with_suffix(".ply").write_bytes(b"x"), "unknown suffix"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path, make, match):
    base = tmp_path / "pts"
    make(base)
    (path,) = list(tmp_path.iterdir())
    with pytest.raises(BadInputError, match=match) as err:
        load_points(path, BASE)
    assert "\n" not in str(err.value)


def test_nan_and_inf_are_refused():
    pts = _pts()
    pts[3, 1] = np.nan
    pts[7, 0] = np.inf
    with pytest.raises(BadInputError, match="2 point"):
        prepare_points(pts, BASE)


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        load_points(tmp_path / "none.bin", BASE)


def test_model_column_arrays_are_taken_as_is():
    """For the 5-channel preset a 5-column array is already the model's columns unless read from a file."""
    pts = _pts()
    np.testing.assert_array_equal(prepare_points(pts, J6), pts)
    assert (prepare_points(pts, J6, file_layout=True)[:, 4] == 0).all()
    four = prepare_points(pts, BASE)
    np.testing.assert_array_equal(prepare_points(four, BASE), four)  # idempotent

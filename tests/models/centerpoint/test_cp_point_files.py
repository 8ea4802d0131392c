"""Point files in the layouts real tools write: .bin of 4/5/6 columns (load_dim/use_dim as mmdet3d), PCD ASCII and
binary (Autoware/PCL), truncated files, NaN points and the range filter; and `cpdebug bisect` on a KITTI scan."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cp_debug.errors import BadInputError
from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.data.point_files import load_point_file, parse_use_dim

TINY = get_preset("tiny")  # x, y, z, t; range +-12.8 m, z -3..5 m
J6 = get_preset("awml-j6gen2")  # x, y, z, intensity, t


def _scan(n=203, cols=5, seed=0, far=0):
    """`n` points inside every preset's range (x, y within +-12 m: tiny's +-12.8 m is the smallest) and `far` points
    130..140 m away (outside all); column 3 is intensity."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-12, 12, (n + far, cols)).astype(np.float32)
    pts[:, 2] = rng.uniform(-2, 2, n + far)
    pts[:, 3] = rng.integers(0, 256, n + far)
    pts[n:, 0] = rng.uniform(130, 140, far)
    return pts


def _write_pcd(path, header_fields, records: np.ndarray | None = None, rows: list[str] | None = None,
               data="binary", points=None):
    """A PCD v0.7 file as PCL writes it: header fields [(name, size, type, count)], then the data."""
    names, sizes, types, counts = zip(*header_fields)
    n = points if points is not None else (len(records) if records is not None else len(rows))
    head = ["# .PCD v0.7 - Point Cloud Data file format", "VERSION 0.7", "FIELDS " + " ".join(names),
            "SIZE " + " ".join(map(str, sizes)), "TYPE " + " ".join(types), "COUNT " + " ".join(map(str, counts)),
            f"WIDTH {n}", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {n}", f"DATA {data}"]
    body = records.tobytes() if records is not None else "".join(r + "\n" for r in rows).encode()
    path.write_bytes(("\n".join(head) + "\n").encode() + body)
    return path


AUTOWARE_FIELDS = [("x", 4, "F", 1), ("y", 4, "F", 1), ("z", 4, "F", 1), ("_", 1, "U", 4),
                   ("intensity", 1, "U", 1), ("ring", 2, "U", 1), ("timestamp", 8, "F", 1)]
AUTOWARE_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pad", "u1", (4,)), ("intensity", "u1"),
                           ("ring", "<u2"), ("timestamp", "<f8")])


def _autoware_records(pts: np.ndarray) -> np.ndarray:
    rec = np.zeros(len(pts), AUTOWARE_DTYPE)
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    rec["pad"] = 0xAB  # padding bytes must not leak into any column
    rec["intensity"] = pts[:, 3]
    rec["ring"] = np.arange(len(pts)) % 128
    rec["timestamp"] = 0.05
    return rec


# -- .bin layouts ------------------------------------------------------------------------------------------
def test_kitti_four_columns_zero_fill_the_time_column(tmp_path):
    pts = _scan(cols=4, far=17)
    pts.tofile(tmp_path / "kitti.bin")  # 220 rows x 16 bytes: not whole 5-column rows
    got = load_point_file(tmp_path / "kitti.bin", TINY, load_dim=4)
    assert got.points.shape == (203, 4)
    np.testing.assert_array_equal(got.points[:, :3], pts[:203, :3])
    assert (got.points[:, 3] == 0).all()
    assert got.zero_filled == ("time",) and got.columns == ("x", "y", "z", "intensity")
    assert (got.points_read, got.out_of_range_dropped, got.points_in_range) == (220, 17, 203)
    assert len(got.warnings) == 1 and "zero-filled" in got.warnings[0] and "time" in got.warnings[0]
    j6 = load_point_file(tmp_path / "kitti.bin", J6, load_dim=4)  # intensity is kept, t is filled
    np.testing.assert_array_equal(j6.points[:, 3], pts[:203, 3])
    assert j6.zero_filled == ("time",)
    xyz = load_point_file(tmp_path / "kitti.bin", J6, load_dim=4, use_dim=3)  # only x, y, z kept
    assert xyz.zero_filled == ("intensity", "time") and (xyz.points[:, 3:] == 0).all()


def test_five_columns_default_and_six_columns_first_use_dim(tmp_path):
    pts5 = _scan(n=201)  # 201 x 20 bytes fits 5 columns only
    pts5.tofile(tmp_path / "t4.bin")
    got = load_point_file(tmp_path / "t4.bin", J6)
    assert got.load_dim == 5 and got.use_dim == (0, 1, 2, 3, 4) and got.zero_filled == () and not got.warnings
    np.testing.assert_array_equal(got.points[:, :4], pts5[:, :4])
    assert (got.points[:, 4] == 0).all()  # AWML's key-frame time lag

    pts6 = _scan(n=201, cols=6)
    pts6[:, 4] = 7.0  # ring
    pts6[:, 5] = 0.25  # time
    pts6.tofile(tmp_path / "six.bin")
    first = load_point_file(tmp_path / "six.bin", J6, load_dim=6)  # the first 5 columns
    assert first.use_dim == (0, 1, 2, 3, 4)
    picked = load_point_file(tmp_path / "six.bin", J6, load_dim=6, use_dim=(0, 1, 2, 3, 5), time_lag=None)
    np.testing.assert_array_equal(picked.points[:, 4], np.full(201, 0.25, np.float32))
    with pytest.raises(BadInputError, match=r"--use-dim 0,1,2,6 picks column 6 .* 6 columns"):
        load_point_file(tmp_path / "six.bin", J6, load_dim=6, use_dim=(0, 1, 2, 6))
    with pytest.raises(BadInputError, match="keeps 6 columns"):
        load_point_file(tmp_path / "six.bin", J6, load_dim=6, use_dim=6)


def test_bin_sizes_that_do_not_fit_name_the_fitting_load_dim(tmp_path):
    kitti = tmp_path / "kitti.bin"
    _scan(n=203, cols=4).tofile(kitti)  # 3248 bytes: fits 4 and 7 columns, not 5
    with pytest.raises(BadInputError) as err:
        load_point_file(kitti, TINY)
    msg = str(err.value)
    assert "3248 bytes" in msg and "`--load-dim 4`" in msg and "\n" not in msg
    with pytest.raises(BadInputError, match=r"not whole float32 rows of --load-dim 6.*`--load-dim 4`"):
        load_point_file(kitti, TINY, load_dim=6)
    cut = tmp_path / "cut.bin"
    cut.write_bytes((tmp_path / "kitti.bin").read_bytes()[:-2])  # a copy cut short mid-value
    with pytest.raises(BadInputError, match="3246 bytes, which fits no float32 layout of 3 to 8 columns") as err:
        load_point_file(cut, TINY, load_dim=4)
    assert "truncated" in str(err.value)


def test_use_dim_text():
    assert parse_use_dim("4") == 4 and parse_use_dim("0,1,2,4") == (0, 1, 2, 4) and parse_use_dim(None) is None
    for bad in ("x,y", "-1", "1.5"):
        with pytest.raises(BadInputError, match="--use-dim"):
            parse_use_dim(bad)


# -- PCD ---------------------------------------------------------------------------------------------------
def test_pcd_binary_with_padding_and_mixed_types_equals_ascii(tmp_path):
    pts = _scan(far=5)
    rec = _autoware_records(pts)
    binary = load_point_file(_write_pcd(tmp_path / "b.pcd", AUTOWARE_FIELDS, records=rec), J6, time_lag=None)
    rows = [f"{r['x']:.9g} {r['y']:.9g} {r['z']:.9g} {' '.join(map(str, r['pad']))} {r['intensity']} {r['ring']} "
            f"{r['timestamp']:.9g}" for r in rec]
    ascii_ = load_point_file(_write_pcd(tmp_path / "a.pcd", AUTOWARE_FIELDS, rows=rows, data="ascii"), J6,
                             time_lag=None)
    assert binary.file_format == "pcd-binary" and ascii_.file_format == "pcd-ascii"
    np.testing.assert_array_equal(binary.points, ascii_.points)
    assert binary.points.shape == (203, 5)
    np.testing.assert_array_equal(binary.points[:, :4], pts[:203, :4])  # intensity from U1, not the padding
    assert (binary.points[:, 4] == np.float32(0.05)).all()  # `timestamp` picked by name
    assert binary.columns == ("x", "y", "z", "intensity", "time=timestamp") and not binary.warnings
    assert (binary.points_read, binary.out_of_range_dropped) == (208, 5)
    keyframe = load_point_file(tmp_path / "b.pcd", J6)  # default: t is the key frame's time lag
    assert (keyframe.points[:, 4] == 0).all()


def test_pcd_without_time_or_intensity_zero_fills_and_warns(tmp_path):
    pts = _scan()
    fields = [("x", 4, "F", 1), ("y", 4, "F", 1), ("z", 4, "F", 1), ("ring", 2, "U", 1)]
    rec = np.zeros(len(pts), [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("ring", "<u2")])
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    got = load_point_file(_write_pcd(tmp_path / "xyz.pcd", fields, records=rec), J6)
    assert got.zero_filled == ("intensity", "time")
    assert len(got.warnings) == 1 and "fields x y z ring" in got.warnings[0] and "zero-filled" in got.warnings[0]
    assert (got.points[:, 3:] == 0).all()
    tiny = load_point_file(tmp_path / "xyz.pcd", TINY)  # tiny does not read intensity: only t is reported
    assert tiny.zero_filled == ("time",)


def test_pcd_nan_points_are_dropped_and_counted(tmp_path):
    pts = _scan()
    pts[[3, 50, 51], 0] = np.nan  # organised clouds mark missing returns with NaN
    pts[9, 2] = np.inf
    got = load_point_file(_write_pcd(tmp_path / "n.pcd", AUTOWARE_FIELDS, records=_autoware_records(pts)), TINY)
    assert got.non_finite_dropped == 4 and got.points_in_range == 199 and np.isfinite(got.points).all()
    assert any("4 of 203 points have NaN/Inf" in w for w in got.warnings)


@pytest.mark.parametrize("case, match", [
    ("compressed", "binary_compressed PCD.*pcl_convert_pcd_ascii_binary"),
    ("truncated", "truncated: its PCD header promises 203 points"),
    ("ascii_short", "truncated: its PCD header promises 300 points, 203 rows follow"),
    ("no_z", "no PCD field z"),
    ("bad_type", "TYPE F SIZE 2"),
    ("not_pcd", "not a PCD file"),
])
def test_bad_pcd_files_give_one_clear_line(tmp_path, case, match):
    pts = _scan()
    rec = _autoware_records(pts)
    path = tmp_path / "bad.pcd"
    if case == "compressed":
        _write_pcd(path, AUTOWARE_FIELDS, records=rec, data="binary_compressed")
    elif case == "truncated":
        _write_pcd(path, AUTOWARE_FIELDS, records=rec)
        path.write_bytes(path.read_bytes()[:-7])
    elif case == "ascii_short":
        _write_pcd(path, AUTOWARE_FIELDS[:3], rows=[f"{x} {y} {z}" for x, y, z in pts[:, :3]], data="ascii", points=300)
    elif case == "no_z":
        _write_pcd(path, [("x", 4, "F", 1), ("y", 4, "F", 1)], rows=["1 2"], data="ascii")
    elif case == "bad_type":
        _write_pcd(path, [("x", 2, "F", 1), ("y", 4, "F", 1), ("z", 4, "F", 1)], rows=["1 2 3"], data="ascii")
    else:
        path.write_bytes(b"ply\nformat ascii 1.0\n")
    with pytest.raises(BadInputError, match=match) as err:
        load_point_file(path, TINY)
    assert "\n" not in str(err.value)


def test_pcd_refuses_load_dim_and_empty_range_is_an_error(tmp_path):
    pts = _scan()
    path = _write_pcd(tmp_path / "p.pcd", AUTOWARE_FIELDS, records=_autoware_records(pts))
    with pytest.raises(BadInputError, match="fields are picked by name: drop --load-dim/--use-dim"):
        load_point_file(path, TINY, load_dim=5)
    far = pts.copy()
    far[:, 0] += 100.0  # every point 88+ m ahead: outside tiny's +-12.8 m
    far.tofile(tmp_path / "far.bin")
    with pytest.raises(BadInputError, match=r"none of its 203 points lies inside preset 'tiny'.*x -12.8..12.8"):
        load_point_file(tmp_path / "far.bin", TINY)


# -- the CLI ----------------------------------------------------------------------------------------------
def _cpdebug(*args):
    from tests.cli_run import cpdebug

    return cpdebug(*args)


@pytest.mark.slow
def test_bisect_reads_a_kitti_scan_with_load_dim_4(tmp_path):
    scan = tmp_path / "000000.bin"
    _scan(n=1500, cols=4, far=61, seed=3).tofile(scan)  # 1561 rows: not whole 5-column rows
    no_flag = _cpdebug("bisect", "--preset", "tiny", "--points", scan, "--backends", "torch,ort", "--json", "-")
    assert no_flag.returncode == 2
    (line,) = [ln for ln in no_flag.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert "`--load-dim 4`" in line and "Traceback" not in no_flag.stderr

    proc = _cpdebug("bisect", "--preset", "tiny", "--points", scan, "--load-dim", "4", "--backends", "torch,ort",
                    "--json", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    cloud = report["model"]["point_cloud"]
    assert (cloud["points_read"], cloud["out_of_range_dropped"], cloud["points_in_range"]) == (1561, 61, 1500)
    assert cloud["zero_filled"] == ["time"] and report["model"]["load_dim"] == 4
    assert report["model"]["num_points"] == 1500
    assert any("zero-filled" in w and str(scan) in w for w in report["warnings"])
    assert report["outputs_within_tolerance"] == {"ort": True}

    # `extract` rebuilds the run's model from the report (its model_record, the recorded --load-dim 4); an unknown
    # candidate stops it first, before the model is loaded.
    (tmp_path / "run.json").write_text(proc.stdout)
    again = _cpdebug("extract", tmp_path / "run.json", "--bundle", tmp_path / "b", "--candidate", "nope")
    assert again.returncode == 2 and "has no candidate 'nope'" in again.stderr, again.stderr[-2000:]


def test_infer_reads_a_kitti_scan_and_prints_the_counts(tmp_path):
    scan = tmp_path / "000001.bin"
    _scan(n=900, cols=4, far=13, seed=4).tofile(scan)
    proc = _cpdebug("infer", "--preset", "tiny", "--points", scan, "--load-dim", "4", "--out", tmp_path / "o.npz", "-q")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "900 of 913 points in range (13 outside, 0 NaN/Inf dropped)" in proc.stdout
    assert "time was zero-filled" in proc.stdout
    assert (tmp_path / "o.npz").is_file()

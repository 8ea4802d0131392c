"""Read a PCD file (PCL's point cloud format, what Autoware tooling writes): ASCII or binary, fields by name.

The header gives FIELDS, SIZE, TYPE (F float, I signed, U unsigned) and COUNT per field, and POINTS (or
WIDTH x HEIGHT); binary data is packed little-endian records in that order, padding fields (`_`) included.
`binary_compressed` (LZF) is not read: the error says how to convert the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cp_debug.errors import BadInputError

_TYPES = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "<i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8",
          ("U", 1): "<u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}
_MAX_HEADER_LINES = 64


@dataclass(frozen=True)
class PcdCloud:
    """The fields of a PCD file as float64 columns, by name (the first of a repeated name wins)."""

    fields: tuple[str, ...]  # every field of the header, in order
    columns: dict[str, np.ndarray]  # name -> (N,) values of single-value (COUNT 1) fields
    data: str  # ascii or binary
    num_points: int


@dataclass(frozen=True)
class _Header:
    fields: tuple[str, ...]
    sizes: tuple[int, ...]
    types: tuple[str, ...]
    counts: tuple[int, ...]
    num_points: int
    data: str
    data_offset: int


def read_pcd(path: Path) -> PcdCloud:
    raw = path.read_bytes()
    head = _parse_header(path, raw)
    if head.data == "binary_compressed":
        raise BadInputError(
            f"point file {path} is a binary_compressed PCD, which cp_debug does not read: convert it with "
            f"`pcl_convert_pcd_ascii_binary {path} {path.with_name(path.stem + '_binary.pcd')} 1` "
            "(PCL tools; 1 = binary) and pass that file"
        )
    if head.data not in ("ascii", "binary"):
        raise BadInputError(f"point file {path} has DATA {head.data!r}: a PCD holds ascii, binary or "
                            "binary_compressed data")
    if head.data == "binary":
        table = _binary_table(path, raw[head.data_offset:], head)
    else:
        table = _ascii_table(path, raw[head.data_offset:], head)
    columns: dict[str, np.ndarray] = {}
    start = 0
    for name, count in zip(head.fields, head.counts):
        if count == 1 and name not in columns:
            columns[name] = table[:, start]
        start += count
    return PcdCloud(fields=head.fields, columns=columns, data=head.data, num_points=head.num_points)


def _parse_header(path: Path, raw: bytes) -> _Header:
    values: dict[str, list[str]] = {}
    offset = 0
    for _ in range(_MAX_HEADER_LINES):
        end = raw.find(b"\n", offset)
        if end < 0:
            break
        line = raw[offset:end].decode("ascii", errors="replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *rest = line.split()
        values[key.upper()] = rest
        if key.upper() == "DATA":
            break
    if "DATA" not in values or "FIELDS" not in values:
        raise BadInputError(f"point file {path} is not a PCD file (no FIELDS/DATA header lines); "
                            "write it with PCL or open3d, or save the points as .npy")
    fields = tuple(values["FIELDS"])
    n = len(fields)
    try:
        sizes = tuple(int(v) for v in values.get("SIZE", []))
        counts = tuple(int(v) for v in values.get("COUNT", ["1"] * n))
        types = tuple(v.upper() for v in values.get("TYPE", []))
        if "POINTS" in values:
            num_points = int(values["POINTS"][0])
        else:
            num_points = int(values["WIDTH"][0]) * int(values.get("HEIGHT", ["1"])[0])
    except (ValueError, IndexError, KeyError):
        raise BadInputError(f"point file {path} has an unreadable PCD header (SIZE/COUNT/POINTS/WIDTH must be "
                            "integers): re-write it with PCL or open3d") from None
    if not (len(sizes) == len(types) == len(counts) == n):
        raise BadInputError(f"point file {path}: the PCD header lists {n} FIELDS but {len(sizes)} SIZE, "
                            f"{len(types)} TYPE and {len(counts)} COUNT values; re-write it with PCL or open3d")
    for name, size, kind in zip(fields, sizes, types):
        if (kind, size) not in _TYPES:
            raise BadInputError(f"point file {path}: PCD field {name!r} has TYPE {kind} SIZE {size}, which no "
                                "PCD reader knows (F 4/8, I or U 1/2/4/8)")
    if num_points < 0:
        raise BadInputError(f"point file {path}: the PCD header gives {num_points} points")
    return _Header(fields, sizes, types, counts, num_points, values["DATA"][0].lower() if values["DATA"] else "",
                   offset)


def _binary_table(path: Path, body: bytes, head: _Header) -> np.ndarray:
    dtype = np.dtype([(f"f{i}", _TYPES[(t, s)], (c,)) for i, (s, t, c)
                      in enumerate(zip(head.sizes, head.types, head.counts))])
    need = dtype.itemsize * head.num_points
    if len(body) < need:
        raise BadInputError(
            f"point file {path} is truncated: its PCD header promises {head.num_points} points of "
            f"{dtype.itemsize} bytes ({need} bytes) but {len(body)} bytes follow it; copy the file again"
        )
    rec = np.frombuffer(body, dtype=dtype, count=head.num_points)
    return np.concatenate([rec[f"f{i}"].astype(np.float64) for i in range(len(head.fields))], axis=1) \
        if head.num_points else np.zeros((0, sum(head.counts)))


def _ascii_table(path: Path, body: bytes, head: _Header) -> np.ndarray:
    width = sum(head.counts)
    text = body.decode("ascii", errors="replace")
    try:
        table = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, comments="#")
    except ValueError as err:
        raise BadInputError(f"point file {path}: an ASCII PCD row does not hold {width} numbers ({err}); "
                            "re-write the file with PCL or open3d") from None
    if table.size == 0:
        table = np.zeros((0, width))
    if table.shape[1] != width:
        raise BadInputError(f"point file {path}: ASCII PCD rows hold {table.shape[1]} values, the header's fields "
                            f"{width}; re-write the file with PCL or open3d")
    if table.shape[0] < head.num_points:
        raise BadInputError(f"point file {path} is truncated: its PCD header promises {head.num_points} points, "
                            f"{table.shape[0]} rows follow; copy the file again")
    return table[: head.num_points]

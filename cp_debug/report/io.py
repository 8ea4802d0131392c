"""Reading and writing reports: strict JSON (no NaN/Infinity tokens), atomic writes, one-line errors.

Reports are written by `cp_debug.files.write_text_atomic`: a temporary file in the same directory, then
`os.replace`, so a reader never sees half a report and a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from cp_debug.bisect.result import SCHEMA, BisectReport
from cp_debug.errors import BadInputError
from cp_debug.files import os_reason, write_text_atomic


def write_json(report: BisectReport, path: str | os.PathLike) -> Path:
    """Write the report as `cp_debug.report/1` JSON; returns the path written."""
    return write_text_atomic(path, dumps(report.to_json()) + "\n")


def dumps(obj, indent: int | None = 2) -> str:
    """Strict JSON: non-finite floats become the strings "nan"/"inf"/"-inf" (as result.py writes them)."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def jsonable(obj):
    """A copy of `obj` that strict JSON can hold: numpy scalars/arrays, tuples, paths and non-finite floats."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return float(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalars and arrays, without importing numpy
    if callable(tolist):
        return jsonable(tolist())
    return str(obj)


def load_report(path: str | os.PathLike) -> BisectReport:
    """Read a report written by `write_json` (or `cpdebug bisect --json`)."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"report file not found: {p}")
    if p.is_dir():
        raise BadInputError(f"{p} is a directory, not a report file (expected a .json from cpdebug bisect --json)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"cannot read {p}: {os_reason(e)}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInputError(f"{p} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BadInputError(f"{p} is not a cp_debug report: schema is {got!r}, expected {SCHEMA!r}")
    try:
        return BisectReport.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        what = f"missing key {e.args[0]!r}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise BadInputError(f"{p} is not a complete cp_debug report: {what}") from None


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (before expensive rendering) when `path` cannot be written: one-line BadInputError."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise BadInputError(f"cannot write {p}: it is a directory")
    if not parent.exists():
        raise BadInputError(f"cannot write {p}: no such file or directory")
    if not parent.is_dir():
        raise BadInputError(f"cannot write {p}: not a directory")
    return p

"""Reading reports back, and checking early that a report can be written: one-line errors.

Reports are written by `cp_debug.files.write_json` (the one strict JSON writer: no NaN/Infinity tokens; a temporary
file in the same directory, then `os.replace`, so a reader never sees half a report).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.errors import BadInputError
from cp_debug.files import os_reason

if TYPE_CHECKING:
    from cp_debug.bisect.result import BisectReport


def load_report(path: str | os.PathLike) -> BisectReport:
    """Read a report written by `cpdebug bisect --json` (`files.write_json` of a BisectReport)."""
    from cp_debug.bisect.result import SCHEMA, BisectReport  # onnx and numpy: not for the output check below

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
        report = BisectReport.from_json(data)
        _check_candidates(report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        what = f"missing key {e.args[0]!r}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        raise BadInputError(f"{p} is not a complete cp_debug report: {what}") from None
    return report


# What each candidate's fields hold in a report cp_debug wrote (None: the field may be null); `from_json` keeps
# them as read, so a value of another type would fail later, in the middle of rendering.
_CANDIDATE_TYPES = {"spec": (str,), "first_divergent": (str, type(None)), "path": (list,),
                    "precision": (dict, type(None)), "outputs_within_tolerance": (bool, type(None)),
                    "wall_s": (int, float, type(None)), "error": (str, type(None)), "detections": (dict, type(None))}


def _check_candidates(report: BisectReport) -> None:
    for cand in report.candidates:
        for name, types in _CANDIDATE_TYPES.items():
            value = getattr(cand, name)
            if not isinstance(value, types):
                raise ValueError(f"{name} of candidate {cand.label!r} is {type(value).__name__} {value!r:.40}")


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

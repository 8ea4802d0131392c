"""The checks every recipe's lint makes of its facts: the same value from each input that gives it, compared (`agree`),
one `LintFinding` per check; the voxel cap against the node's and against the data. A recipe's own list of checks is
its `lint` plug-in's (CenterPoint's: `recipes/centerpoint/lint.py`).

A check is skipped where fewer than two inputs give its value; each mismatch names every value and where it came
from. Class names are compared case-blind (AWML writes `car`, Autoware `CAR`) but in order: the heatmap's channel
c is class_names[c] on both sides.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from cp_debug.lint.findings import Fact, LintFinding
from cp_debug.lint.sources import Facts


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, str) or isinstance(b, str):
        return str(a).lower() == str(b).lower()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-6)
    return a == b


def agree(check: str, facts: list[Fact | None], same: Callable[[Any, Any], bool] = _close,
          what: str = "") -> LintFinding:
    """Every given fact must equal the first; `what` says what the value is, for the message."""
    given = [f for f in facts if f is not None]
    if len(given) < 2:
        only = f" (only {given[0].where} gives it)" if given else ""
        return LintFinding(check, "skipped", f"fewer than two inputs give {what or check}{only}", tuple(given))
    first = given[0]
    odd = [f for f in given[1:] if not same(first.value, f.value)]
    if not odd:
        where = ", ".join(f.where for f in given)
        return LintFinding(check, "ok", f"{what or check} {_show(first.value)} in {where}", tuple(given))
    parts = [f"{_show(first.value)} ({first.where})"] + [f"{_show(f.value)} ({f.where})" for f in odd]
    kinds = {f.kind for f in [first, *odd]}
    breaks = {"config", "onnx"} <= kinds and any(
        not same(a.value, b.value) for a in given if a.kind == "config" for b in given if b.kind == "onnx")
    return LintFinding(check, "mismatch", f"{what or check}: " + " ≠ ".join(parts), tuple(given), breaks)


def _max_voxels(cfg: Facts, params: Facts) -> LintFinding:
    found = agree("max_voxels", [cfg.get("max_voxels"), params.get("max_voxels")], what="voxel cap")
    if found.status == "mismatch":  # a different cap changes only the scans that exceed the smaller one
        return LintFinding("max_voxels", "warning", found.message + " (scans past the smaller cap lose pillars on "
                           "one side only)", found.facts)
    return found


def _voxel_cap(cfg: Facts, params: Facts, data: Fact) -> LintFinding:
    """The most pillars a frame of the data fills against the cap the node (or the config) keeps."""
    cap = params.get("max_voxels") or cfg.get("max_voxels")
    if cap is None:
        return LintFinding("voxel_cap", "skipped", "no voxel cap given (params or config)", (data,))
    need = int(data.value)
    if need > int(cap.value):
        return LintFinding("voxel_cap", "mismatch", f"a frame needs {need} pillars ({data.where}) but the cap is "
                           f"{cap.value} ({cap.where}): {need - int(cap.value)} pillars are dropped without a word",
                           (data, cap))
    return LintFinding("voxel_cap", "ok", f"the fullest frame needs {need} pillars ({data.where}), within the cap "
                       f"{cap.value} ({cap.where})", (data, cap))

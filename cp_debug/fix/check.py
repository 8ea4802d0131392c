"""`cpdebug fix --check DIR`: re-verify a written fix on this machine's toolchain, and say what changed.

The recorded verification is run again exactly (same frames, same FP32 pair, same fixed pair, same device)
and judged against the recorded target; the recorded versions of every library and driver involved are
compared with this machine's, so a fix that stops holding after an ONNX Runtime, TensorRT, CUDA or driver
upgrade names the upgrade (users roll TensorRT back over unexplained FP16 drift: this is the guard). Files
whose sha256 differs from the record are named too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.fix.toolchain import Change, CheckedFix, toolchain, version_changes  # noqa: F401 - check's API

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.recipe_contract.recipe import Recipe

FIGURES = ("worst_rel_rmse", "map_drop", "lost_boxes", "added_boxes")  # a recipe's fix compares these and its own


@dataclass(frozen=True)
class CheckResult(CheckedFix):
    """`fix --check DIR` of a CenterPoint or TransFusion-L fix (its `verification`: `fix.verify.Verification`)."""


def figure_changes(recorded: dict, now: dict, rel: float = 1e-6, keys=FIGURES) -> tuple[Change, ...]:
    out = []
    for k in keys:
        a, b = _num(recorded.get(k)), _num(now.get(k))
        if a is None and b is None:
            continue
        same = (a is not None and b is not None
                and (a == b or (isinstance(a, float) and isinstance(b, float)
                                and (math.isclose(a, b, rel_tol=rel, abs_tol=1e-12) or (a != a and b != b)))))
        if not same:
            out.append(Change(k, a, b))
    return tuple(out)


def _num(x):
    """Figures as numbers: strict JSON holds non-finite floats as "nan" / "inf" / "-inf"."""
    return float(x) if isinstance(x, str) and x in ("nan", "inf", "-inf") else x


def check_fix(path: str | Path, recipe: "Recipe", *, device: str | None = None, progress=None):
    """Re-run the recorded verification of the fix in `path` and compare it and the toolchain with the record: a
    `CheckResult`, or a generic fix's `module_files.GraphCheck` (the same fields and exit codes). `recipe`: the one
    its fix.json names, resolved by the caller (`cli/fix_cmd.py`); a generic fix needs none."""
    from cp_debug.fix.artifact import read_fix, sha256
    from cp_debug.fix.module_files import check_graph_fix, is_graph_fix

    root = Path(path)
    doc = read_fix(root)
    if is_graph_fix(doc):  # a fix of any one graph (`fix --torch` / `--onnx`): its own samples and FP32 graph
        return check_graph_fix(root, doc, device=device, progress=progress)
    rec = doc["verification"]
    ver, keys = recipe.plugin("fix").check_fix(root, doc, device=device, progress=progress)
    modified = tuple(name for name, digest in (doc.get("files") or {}).items()
                     if not (root / name).is_file() or sha256(root / name) != digest)
    return CheckResult(root, rec.get("holds"), ver, version_changes(doc.get("environment") or {}, toolchain()),
                       figure_changes(rec["fixed"], ver.fixed.to_json(), keys=keys), modified)


def budget_figures(result: CheckResult):
    """What `fix --check` measured of the written fix, for `--budget` (`eval.gates.CandidateFigures`): mAP and NDS
    of the fixed pair against the FP32 pair, and the frames its verdict calls diverged."""
    from cp_debug.compare.noise import Outcome
    from cp_debug.eval.gates import CandidateFigures

    v = result.verification
    f = v.fixed.figures
    tokens = list(v.frames.tokens)
    diverged = tuple(f"{tokens[i] if i < len(tokens) else i} ({x.reason})" for i, x in enumerate(f.verdicts or ())
                     if x.outcome is Outcome.DIVERGED)
    scored = v.reference_map is not None  # (a TransFusion fix's frames are judged per query: no mAP)
    return (CandidateFigures(f"fix {result.path.name}", "its FP32 pair",
                             map=(v.reference_map, v.fixed.map) if scored else None,
                             nds=(v.reference_nds, v.fixed.nds) if scored else None, frames=len(tokens),
                             diverged_frames=diverged),)


def junit_suite(result: CheckResult, extra=()):
    """`fix --check` as one JUnit suite (`report.junit`): a case per check — the verification holds, the files are
    the ones written, the recorded figures are met again, the toolchain (changes listed, never a failure by
    itself) — the figures in the message; `extra`: the budget's cases."""
    from cp_debug.report.junit import TestCase, TestSuite

    v = result.verification
    f = v.fixed.figures
    cls = f"cpdebug.fix_check.{result.path.name}"
    figures = {"target": v.target.describe(), "device": v.device, "frames": len(f.frames),
               "worst_rel_rmse": f.worst, "lost_boxes": f.lost_boxes, "added_boxes": f.added_boxes,
               "map_drop": f.map_drop, "outcome": f.outcome.value if f.outcome is not None else None}
    figures = {k: x for k, x in figures.items() if x is not None}
    summary = (f"worst rel. RMSE {f.worst:.3g}, lost boxes {f.lost_boxes}, mAP drop "
               f"{f.map_drop if f.map_drop is not None else float('nan'):+.4f} on {len(f.frames)} frame(s), {v.device}")
    cases = [
        TestCase("verification holds", cls, failure=None if result.holds else
                 f"{v.target.describe()} does not hold here: {summary}", properties=figures,
                 failure_type="cpdebug.not_verified"),
        TestCase("files unchanged", cls, failure=None if not result.modified_files else
                 f"modified since written: {', '.join(result.modified_files)}", failure_type="cpdebug.modified"),
        TestCase("figures as recorded", cls, failure=None if not result.figures or result.holds else
                 "figures changed: " + "; ".join(c.text() for c in result.figures),
                 properties={c.name: f"{c.recorded} -> {c.now}" for c in result.figures},
                 failure_type="cpdebug.figures"),
        TestCase("toolchain", cls, properties={c.name: f"{c.recorded} -> {c.now}" for c in result.versions}
                 or {"changed": "nothing"}),
    ]
    return TestSuite("cpdebug.fix_check", [*cases, *extra], {"path": str(result.path), "holds": result.holds,
                                                             "recorded_holds": result.recorded_holds})

"""Recording a candidate's measurements: probe results, amplification, plot arrays, the precision verdict."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from cp_debug.bisect.result import ProbeResult
from cp_debug.bisect.run_state import CandidateState, RunState
from cp_debug.compare.diff import TensorDiff
from cp_debug.compare.plot_data import error_heatmap, error_histogram


def record(run: RunState, s: CandidateState, name: str, ref, value, local_value, upstream: tuple) -> TensorDiff:
    """Store one probe's propagated (and local) error for a candidate; returns the propagated diff."""
    tol = run.tolerance(s, name)
    d = TensorDiff.from_arrays(name, ref, value, tol)
    loc = None
    if local_value is value:
        loc = d
    elif local_value is not None:
        loc = TensorDiff.from_arrays(name, ref, local_value, tol)
    if name not in s.plots:
        keep_plot(s, name, ref, value)
    s.results[name] = ProbeResult(name, d.status, d, loc)
    if upstream:
        s.results[name] = replace(s.results[name], amplification=amplification(s, name, list(upstream)))
    return d


def amplification(state: CandidateState, name: str, upstream: list[str]) -> float | None:
    """Propagated error out ÷ propagated error in (relative RMS), None where no error flows in."""
    own = state.results[name].diff
    e_in = max((state.results[u].diff.rel_rmse for u in upstream
                if u in state.results and state.results[u].diff is not None
                and math.isfinite(state.results[u].diff.rel_rmse)), default=0.0)
    if own is None or e_in <= 0 or not math.isfinite(own.rel_rmse):
        return None
    return own.rel_rmse / e_in


def keep_plot(state: CandidateState, name: str, ref, test) -> None:
    """The small histogram (and heatmap, for image-like tensors) arrays of one probe's error."""
    ref = np.asarray(ref)
    test = np.asarray(test)
    if ref.shape != test.shape:
        return
    entry = {"histogram": error_histogram(ref, test)}
    entry["histogram"]["probe"] = name
    if ref.ndim in (3, 4) and min(ref.shape[-2:]) >= 8:
        hm = error_heatmap(ref, test)
        hm["probe"] = name
        entry["heatmap"] = hm
    state.plots[name] = entry


def merge_precision(state: CandidateState, stage: str, rep) -> None:
    """One precision verdict over all stages: any stage that ran something else makes it not honest."""
    notes = [f"{stage}: {n}" for n in rep.notes]
    if state.precision is None:
        state.precision = {"requested": rep.requested, "effective": rep.effective, "notes": notes}
        return
    for n in notes:
        if n not in state.precision["notes"]:
            state.precision["notes"].append(n)
    if rep.effective != rep.requested and state.precision["effective"] == state.precision["requested"]:
        state.precision["effective"] = rep.effective
    elif rep.effective != state.precision["effective"] and rep.effective != rep.requested:
        state.precision["effective"] = "mixed"

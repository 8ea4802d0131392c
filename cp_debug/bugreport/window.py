"""Shrink a diverging ONNX segment to a smaller contiguous range of nodes that still diverges on its own.

The FP32 segment runs once in ONNX Runtime with every intermediate tensor exposed: those are the reference
values at any cut. A candidate range [start, stop) of the topologically sorted nodes is cut out with
onnx-graphsurgeon (its inputs: the tensors it consumes but does not make; its outputs: the tensors it makes that
later nodes or the segment's outputs use), put through the precision transform, fed the reference values and
judged by the divergence predicate. The end is shrunk first (the shortest diverging prefix), then the start
(the latest start that still diverges), by binary search (`bisect.cures.window_search.RangeShrinkSearch`, run by the one
search driver); every range returned has been run and seen to diverge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from cp_debug.bisect.cures.search import Verdict, run_search
from cp_debug.bisect.cures.window_search import RangeShrinkSearch
from cp_debug.compare.diff import TensorDiff, Tolerance
from cp_debug.errors import BadInputError
from cp_debug.graph.onnx_files import copy_model
from cp_debug.graph.segment import cut_range
from cp_debug.graph.session import run_all_outputs, run_ort

if TYPE_CHECKING:
    import onnx

Predicate = Callable[[dict, dict], bool]  # (reference outputs, candidate outputs) -> diverges?


@dataclass
class ShrunkSegment:
    """The smallest diverging range found: what `write_bundle` ships (`candidate` is the graph to bundle)."""

    model: "onnx.ModelProto"  # the FP32 sub-range
    candidate: "onnx.ModelProto"  # the same nodes after the precision transform
    inputs: dict[str, np.ndarray]  # boundary inputs: the reference's (FP32) values at the cut
    reference_outputs: dict[str, np.ndarray]
    candidate_outputs: dict[str, np.ndarray]
    nodes: list[str]  # node names of the range, in topological order
    start: int  # [start, stop) in the segment's topological node order
    stop: int
    total_nodes: int
    evaluations: int  # candidate ranges cut, transformed and run
    notes: list[str] = field(default_factory=list)  # ranges that could not be transformed or run


def diverges_beyond(tolerance: Tolerance) -> Predicate:
    """The usual predicate: any output the candidate computes beyond `tolerance` (or NaN/Inf, or missing)."""

    def diverges(ref: dict, cand: dict) -> bool:
        return any(name not in cand or TensorDiff.from_arrays(name, r, cand[name], tolerance).status != "ok"
                   for name, r in ref.items())

    return diverges


def shrink_segment(model: "onnx.ModelProto", transform: Callable[["onnx.ModelProto"], "onnx.ModelProto"],
                   inputs: dict[str, np.ndarray], diverges: Predicate | Tolerance, *,
                   providers=("CPUExecutionProvider",), session_options: dict | None = None,
                   run: Callable[["onnx.ModelProto", dict], dict] | None = None,
                   max_evaluations: int = 200) -> ShrunkSegment:
    """Find a smaller contiguous node range of the FP32 segment `model` that still diverges after `transform`.

    `transform` maps an FP32 model to the candidate's precision (FP16 conversion, Q/DQ insertion…) and keeps
    tensor names; `diverges` is a predicate or a Tolerance (see `diverges_beyond`). The reference values come
    from ONNX Runtime (`providers`, `session_options`); the candidate ranges run there too unless `run`
    (model, feed) -> outputs is given, e.g. a TensorRT runner.
    """
    from cp_debug.graph.weight_store import import_graph

    pred = diverges_beyond(diverges) if isinstance(diverges, Tolerance) else diverges
    graph = import_graph(model)
    graph.cleanup().toposort()
    n = len(graph.nodes)
    if n == 0:
        raise BadInputError("shrink_segment: the segment has no nodes")
    for i, node in enumerate(graph.nodes):
        node.name = node.name or f"{node.op}_{i}"
    declared = [t.name for t in graph.inputs]
    missing = [k for k in declared if k not in inputs]
    if missing:
        raise BadInputError(f"shrink_segment: no value given for segment input(s) {', '.join(missing)}")
    values = {k: np.asarray(v) for k, v in inputs.items()}  # the reference's value of every tensor, at any cut
    values.update(run_all_outputs(graph, {k: inputs[k] for k in declared}, providers, session_options))
    run = run or (lambda m, feed: run_ort(m, feed, providers, session_options))
    judge = _Ranges(graph, values, transform, pred, run)
    search = RangeShrinkSearch(n, max_runs=max_evaluations)
    trace = run_search(search, judge)
    if search.status != "found":
        raise BadInputError("shrink_segment: the segment does not diverge on its own after the precision "
                            "transform, so there is nothing to shrink")
    start, stop = search.result
    best = trace.find((start, stop)).figures
    return ShrunkSegment(best.model, best.candidate, best.inputs, best.reference_outputs, best.candidate_outputs,
                         [nd.name for nd in graph.nodes[start:stop]], start, stop, n, trace.runs, judge.notes)


@dataclass
class _Run:
    diverged: bool
    model: object = None
    candidate: object = None
    inputs: dict = field(default_factory=dict)
    reference_outputs: dict = field(default_factory=dict)
    candidate_outputs: dict = field(default_factory=dict)


class _Ranges:
    """The judge of `RangeShrinkSearch`: cuts a node range out, transforms, runs and judges it. The whole
    segment must run (a BadInputError otherwise); a smaller range that cannot is noted and counts as passing."""

    def __init__(self, graph, values, transform, pred, run):
        self.graph, self.values, self.transform, self.pred, self.run = graph, values, transform, pred, run
        self.notes: list[str] = []

    def __call__(self, experiment: tuple[int, int]) -> Verdict:
        start, stop = experiment
        r = self._run(start, stop, strict=(start, stop) == (0, len(self.graph.nodes)))
        return Verdict(r.diverged, r)

    def _run(self, start: int, stop: int, strict: bool) -> _Run:

        sub, in_names, out_names = cut_range(self.graph, start, stop, self.values)
        feed = {k: self.values[k] for k in in_names}
        ref = {k: self.values[k] for k in out_names}
        try:
            cand_model = self.transform(copy_model(sub))
            got = self.run(cand_model, feed)
            lost = [k for k in out_names if k not in got]
            if lost:
                raise ValueError(f"the transformed range has no output {lost[0]!r}: the transform must keep names")
        except Exception as e:  # a range the transform or the runtime cannot take is not a repro
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if strict:
                raise BadInputError(f"shrink_segment: the whole segment cannot run after the precision transform: "
                                    f"{why}") from None
            self.notes.append(f"nodes [{start}, {stop}): {type(e).__name__}: {why[:200]}")
            return _Run(False)
        return _Run(bool(self.pred(ref, got)), sub, cand_model, feed, ref, got)

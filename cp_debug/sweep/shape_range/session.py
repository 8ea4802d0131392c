"""The sweep's side of the shape-range search: each shape judged once on sessions built once, every candidate's
search, the judged shapes ranked and the first failing shape of each candidate bisected (the package docstring says
the whole flow)."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, replace

from cp_debug.samples.shapes import ShapedInputs, ShapeSpace
from cp_debug.sweep.records import FLAGGED, FrameResult
from cp_debug.sweep.samples import SampleSweep, SampleSweepOptions
from cp_debug.sweep.shape_range.search import Point


@dataclass(frozen=True)
class Judged:
    """One point of a candidate's search: the shapes' sample token, the phase that asked for it, whether the
    candidate failed there and its outcome word there (`failed`: the run itself failed)."""

    token: str
    phase: str
    fails: bool
    outcome: str


@dataclass(frozen=True)
class CandidateRange:
    """One candidate over the range: the search's status, its first failing and last passing shapes (input ->
    shape; None where there is none), each boundary found, every point it judged, and at the first failing shape
    the bisect's first divergent probe and root cause."""

    label: str
    status: str  # found | fails_at_min | passes_at_max
    first_failing: dict | None
    last_passing: dict | None
    boundaries: tuple[dict, ...]
    steps: tuple[Judged, ...]
    first_failing_token: str | None = None
    point: tuple[int, ...] | None = None  # the first failing shape as the search's point (one size an axis)
    first_divergent: str | None = None
    root_cause: str | None = None
    hint: str | None = None
    bisect: str | None = None  # the report's path in the sweep's folder, or the bisect's failure in words

    def to_json(self) -> dict:
        return {"status": self.status, "first_failing": self.first_failing, "last_passing": self.last_passing,
                "first_failing_token": self.first_failing_token, "first_divergent": self.first_divergent,
                "root_cause": self.root_cause, "hint": self.hint, "bisect": self.bisect, "runs": len(self.steps),
                "boundaries": list(self.boundaries),
                "steps": [{"shape": s.token, "phase": s.phase, "fails": s.fails, "outcome": s.outcome}
                          for s in self.steps]}


@dataclass(frozen=True)
class RangeSweep:
    """The search's results (per candidate), the judged shapes as a sample sweep (ranked, bisected), the space
    searched, how its inputs were made, and the runs and seconds it took."""

    sweep: SampleSweep
    space: ShapeSpace
    candidates: tuple[CandidateRange, ...]
    inputs: dict[str, str]
    runs: int
    seconds: float
    limit: "ModelLimit | None" = None  # where the reference itself cannot run: the search bounded there

    def to_json(self) -> dict:
        """sweep.json's `shape_search`."""
        out = {"min_shapes": _json(self.space.min_shapes), "max_shapes": _json(self.space.shapes(self.space.hi)),
               "axes": [a.to_json() for a in self.space.axes], "inputs": self.inputs, "runs": self.runs,
               "seconds": round(self.seconds, 3), "candidates": {c.label: c.to_json() for c in self.candidates}}
        if self.limit is not None:
            out["model_limit"] = self.limit.to_json()
        return out


@dataclass(frozen=True)
class ModelLimit:
    """The reference's own range (issue 117: a BERT of 256 positions searched to 512 tokens, the reference raising
    from 257 on): the first shape it cannot run (`token`, `shapes`), why, and the last it runs, where the
    candidates' searches stop (`searched_to`); `shapes_judged`: how many shapes the reference could not run."""

    token: str
    shapes: dict
    reason: str
    searched_to: dict
    shapes_judged: int

    def to_json(self) -> dict:
        return {"first_failing": self.shapes, "first_failing_token": self.token, "reason": self.reason,
                "searched_to": self.searched_to, "shapes_failed": self.shapes_judged}

    def line(self) -> str:
        to = ",".join(f"{n}={'x'.join(map(str, s))}" for n, s in self.searched_to.items())
        ref, _, why = self.reason.split(": ", 1)[-1].partition(": ")
        return f"the model's own limit: the reference {ref} cannot run {self.token} ({why}); searched up to {to}"


def _json(shapes) -> dict:
    return {n: list(s) for n, s in shapes.items()}


class ShapeJudge:
    """`judge(point) -> FrameResult`: every lane run on the inputs at the point's shapes and judged by the sample
    sweep's judge, once a point (the candidates' searches share the runs); `progress(at=token)` after each new
    run."""

    def __init__(self, space: ShapeSpace, inputs: ShapedInputs, runners: dict, opts: SampleSweepOptions,
                 progress=None):
        self.space, self.inputs, self.runners, self.opts, self.progress = space, inputs, runners, opts, progress
        self.results: dict[Point, FrameResult] = {}

    def __call__(self, point: Point) -> FrameResult:
        from cp_debug.samples.sets import Sample
        from cp_debug.sweep.samples import judge_feed

        if point not in self.results:
            token = self.space.token(point)
            self.results[point] = judge_feed(len(self.results), Sample(token, self.inputs.feed(point)), self.runners,
                                             self.opts)
            if self.progress:
                self.progress(at=token)
        return self.results[point]


def fails(result: FrameResult, label: str) -> tuple[bool, str]:
    """Whether `label` fails on this judged shape (beyond its precision, or the run failed), and its word there."""
    if result.status == "failed":
        return True, "failed"
    outcome = next((c.outcome for c in result.candidates if c.candidate == label), None) or "within_precision"
    return outcome in FLAGGED, outcome


def run_range_sweep(model, space: ShapeSpace, inputs: ShapedInputs, opts: SampleSweepOptions, source: str,
                    step=None, progress=None) -> RangeSweep:
    """Every candidate's search over `space` on `model` (`ModuleModel`: `runner(spec)`, `bisect(feed, …)`), the judged
    shapes ranked, each candidate's first failing shape bisected (unless `opts.bisect_top` is 0)."""
    from cp_debug.sweep.rank import rank_frames
    from cp_debug.sweep.samples import RUNNER_OPTIONS, judged_at

    opts = judged_at(model, opts)  # a deployed candidate at the precision its files hold, as bisect judges it
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        runners = {label: stack.enter_context(model.runner(spec, **RUNNER_OPTIONS)) for label, spec in opts.pairs}
        judge = ShapeJudge(space, inputs, runners, opts, progress)
        limit, hi = model_limit(space, judge)
        candidates = search_candidates(space, [label for label, _ in opts.pairs[1:]], judge, hi)
    from cp_debug.sweep.samples import reference_failed

    out_of_range = [r for r in judge.results.values() if reference_failed(r)]
    if limit is not None:
        limit = replace(limit, shapes_judged=len(out_of_range))
    results = sorted((r for r in judge.results.values() if not reference_failed(r)), key=lambda r: r.index)
    ranked, _ = rank_frames(results, factor=math.inf, mode=opts.tolerance_mode)
    reports: dict = {}
    if opts.bisect_top > 0:
        candidates, ranked = _bisect_first_failing(model, candidates, ranked, inputs, opts, step, reports)
    shapes = {space.token(p): space.shapes(p) for p in judge.results}
    sweep = SampleSweep(ranked, reports, source, sum(r.status == "failed" for r in results), None, shapes,
                        tuple(results))
    return RangeSweep(sweep, space, tuple(candidates), inputs.described(), len(judge.results),
                      time.perf_counter() - t0, limit)


def model_limit(space: ShapeSpace, judge) -> tuple[ModelLimit | None, Point]:
    """The reference's own range searched first (a point fails where the reference cannot run it; the judge keeps
    the runs for the candidates): (its limit, None where it runs the whole range; the range's max bounded by it).
    The reference unable to run the min shapes: one line (exit 2), the range is the model's mistake."""
    from cp_debug.bisect.cures.search import run_search
    from cp_debug.errors import BadInputError
    from cp_debug.sweep.samples import reference_failed
    from cp_debug.sweep.shape_range.search import ShapeRangeSearch

    names = [a.name for a in space.axes]
    search = ShapeRangeSearch(space.lo, space.hi, names)
    run_search(search, lambda p: reference_failed(judge(p)))
    if search.status == "passes_at_max":
        return None, space.hi
    first = search.result.first_failing
    reason = judge(first).reason or ""
    if search.status == "fails_at_min":
        raise BadInputError(f"--min-shapes {space.token(first)}: {reason}; the model cannot run the range's min "
                            "shapes (give a range it runs)")
    hi = list(space.hi)
    for b in search.result.boundaries:
        if b.along == "joint":
            hi = [min(h, v) for h, v in zip(hi, b.last_passing)]
        else:
            k = names.index(b.along)
            hi[k] = min(hi[k], b.last_passing[k])
    hi = tuple(max(lo, h) for lo, h in zip(space.lo, hi))
    return ModelLimit(space.token(first), _json(space.shapes(first)), reason, _json(space.shapes(hi)), 0), hi


def search_candidates(space: ShapeSpace, labels: list[str], judge, hi: Point | None = None) -> list[CandidateRange]:
    """Each candidate's search over `space`, `judge(point) -> FrameResult` judging every candidate at a point (the
    seam any model plugs into: `ShapeJudge` runs an ONNX file's sessions; a judge should keep its runs, as
    `ShapeJudge` does, so the candidates' searches share them)."""
    from cp_debug.bisect.cures.search import run_search
    from cp_debug.sweep.shape_range.search import ShapeRangeSearch

    out = []
    for label in labels:  # `hi`: the range's max where the model's own limit bounds it (`model_limit`)
        search = ShapeRangeSearch(space.lo, hi or space.hi, [a.name for a in space.axes])
        trace = run_search(search, lambda p, label=label: fails(judge(p), label)[0])
        out.append(_candidate(label, search, trace, space, judge))
    return out


def _candidate(label: str, search, trace, space: ShapeSpace, judge) -> CandidateRange:
    res = search.result
    steps = tuple(Judged(space.token(s.experiment), s.phase, s.bad, fails(judge(s.experiment), label)[1])
                  for s in trace.steps)
    bounds = tuple({"along": b.along, "first_failing": _json(space.shapes(b.first_failing)),
                    "last_passing": _json(space.shapes(b.last_passing))} for b in res.boundaries)
    return CandidateRange(label, search.status,
                          _json(space.shapes(res.first_failing)) if res.first_failing is not None else None,
                          _json(space.shapes(res.last_passing)) if res.last_passing is not None else None, bounds,
                          steps, space.token(res.first_failing) if res.first_failing is not None else None,
                          res.first_failing)


def _bisect_first_failing(model, candidates: list, ranked: list, inputs: ShapedInputs, opts: SampleSweepOptions,
                          step, reports: dict) -> tuple[list, list]:
    """Each candidate's first failing shape bisected on that candidate (`bisect/<token>.json`; a second candidate
    failing first at the same shape: `<token>@<label>.json`): its first divergent probe and root cause, and the
    ranked shape given them."""
    from cp_debug.bisect.result import BisectReport
    from cp_debug.sweep.explain import bisect_flagged
    from cp_debug.sweep.samples import bisect_options

    specs = dict(opts.pairs)
    out = []
    for c in candidates:
        at = next((k for k, r in enumerate(ranked) if r.token == c.first_failing_token), None)
        if at is None or not ranked[at].flagged:  # none, or its run failed: nothing to bisect
            out.append(c)
            continue
        key = c.first_failing_token if c.first_failing_token not in reports else f"{c.first_failing_token}@{c.label}"
        asked = replace(ranked[at], token=key, candidate=c.label)

        def bisect_one(r, label=c.label, point=c.point):
            return model.bisect(inputs.feed(point), opts.pairs[0], (label, specs[label]), bisect_options(opts))

        got, (done,) = bisect_flagged(opts.out, [asked], 1, step, bisect_one, opts.runs_on)
        rep = got[key]
        reports[key] = rep
        if isinstance(rep, BisectReport):
            cand = next((x for x in rep.candidates if x.label == c.label), None)
            c = replace(c, first_divergent=cand.first_divergent if cand else None, root_cause=done.root_cause,
                        hint=done.hint, bisect=f"bisect/{key}.json")
            if key == ranked[at].token:
                ranked[at] = replace(ranked[at], bisected=True, root_cause=done.root_cause, hint=done.hint)
        else:
            c = replace(c, bisect=f"bisect failed: {rep.reason}")
        out.append(c)
    return out, ranked


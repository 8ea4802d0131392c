"""`cpdebug sweep --torch | --onnx`: every sample of any one-graph model through the reference and the candidates,
as the frames of a CenterPoint sweep go: each sample's outcome (within_precision, degraded, diverged, or failed) by the
one judge (`samples/judge.py`), written into the same shard files (`shards.py`: whole, resumable), ranked by
`rank.py` (its outputs' errors against their median over the samples), the worst K bisected on the model already
loaded (`ModuleModel.bisect`) and their root causes counted (`explain.root_cause_counts`); sweep.json is read by the
same terminal table and JUnit suite (`summary.py`).

The model is loaded and exported once and each backend's session is built once for the whole sweep (ONNX Runtime's
threads not spinning between runs: the other lanes and the judge run there); the samples are read one at a time, the
next one on a helper thread while the current one runs, and judged on another while the next one runs; only each
sample's figures are kept, so memory does not grow with the samples. The loop is a CenterPoint sweep's in-process
executor (`executor.InProcessExecutor`): shard files written on a helper thread, each sample rendered once, a
shard's partial file at most once a second (`PARTIAL_EVERY`: after every sample it cost 2-4 ms a sample, a quarter of
a small model's inference; a killed sweep loses at most a second of samples). The comparison kernels (numba) are
loaded on a helper thread while the sessions are built (`kernels.warm_up_in_background`). Measured against plain
runs of the same samples by `benchmarks/sweep_any_model.py`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cp_debug.compare.noise import Outcome, status_of, worst
from cp_debug.compare.weight_only import weight_only
from cp_debug.errors import CpDebugError
from cp_debug.sweep.records import CandidateFrame, DetectionDelta, FrameResult, ProbeStat

PARTIAL_EVERY = 1.0  # seconds: a shard's partial file rewritten at most this often (the docstring says why)
RUNNER_OPTIONS = {"spinning": False}  # ORT's idle threads would busy-wait through the other lanes and the judge
SCHEMA = "cp_debug.sweep/2"  # sweep.json's contract, a CenterPoint sweep's too (docs/schemas/)
MANIFEST_KIND = "samples"
NO_BOXES = DetectionDelta(0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, False)  # a generic model's sample has no boxes


@dataclass(frozen=True)
class SampleSweepOptions:
    """How a sample sweep runs: the backends ((label, spec), the reference first), where it writes, how it judges."""

    pairs: tuple
    out: Path
    runs_on: dict | None = None  # what the command runs on (the CLI's record), in each sample's bisect report too
    shard_size: int = 8
    resume: bool = False
    bisect_top: int = 3
    level: str | None = None
    tolerance_mode: str = "model"
    atol: float | None = None
    rtol: float | None = None
    seed: int = 0
    deterministic: bool = True
    calib: Path | Sequence[Path] | None = None  # a calibrated candidate's --calib (samples/calibration.py)
    metric: Any = None  # --metric (samples.tasks.TaskMetric): the application's decision on every sample
    decided: dict = field(default_factory=dict)  # without one: the outputs a Sigmoid / Softmax writes (name -> op)
    # label -> (precision, unit) a deployed candidate is judged at, as bisect judges it (`DeployedStages.judged`)
    judged: dict = field(default_factory=dict)

    def at(self, label: str, spec) -> tuple[str, float | None]:
        """(precision, unit) the candidate `label` is judged at: its files' (`judged`), else its spec's."""
        return self.judged.get(label, (spec.precision, None))

    def settings(self, model) -> dict:
        """What the results depend on (the manifest's identity for --resume)."""
        return {"kind": MANIFEST_KIND, "model": model.source, "backends": [label for label, _ in self.pairs],
                "tolerance_mode": self.tolerance_mode, "atol": self.atol, "rtol": self.rtol, "seed": self.seed,
                **({"metric": self.metric.name} if self.metric is not None else {})}


@dataclass(frozen=True)
class SampleSweep:
    """The samples ranked worst first, the bisect reports of the worst (by sample), and the source in words."""

    ranked: list
    reports: dict
    source: str
    failed: int
    calibration: object = None  # samples.calibration.Calibration, where a candidate is calibrated
    shapes: dict | None = None  # sample name -> {input: shape}: sweep.json's `shape` of each frame and `by_shape`
    results: tuple = ()  # every sample's `FrameResult` (its outputs' figures per candidate): frames.parquet's rows
    decided: dict = field(default_factory=dict)  # the Sigmoid / Softmax outputs read without a --metric


def run_sample_sweep(model, samples, opts: SampleSweepOptions, step=None, progress=None) -> SampleSweep:
    """`samples` (`samples.sets.SampleSet`) through `model` (`ModuleModel`) on every backend, into shards
    under `opts.out`; ranked; the worst `opts.bisect_top` bisected."""
    from cp_debug.sweep.rank import rank_frames
    from cp_debug.sweep.shards import ShardStore, plan_shards

    from cp_debug.sweep.executor import InProcessExecutor

    opts = judged_at(model, opts)
    store = ShardStore(opts.out)
    names = list(samples.names)
    store.start(opts.settings(model), names, opts.shard_size, opts.resume)
    pending = store.pending(plan_shards(names, opts.shard_size))
    if any(t.todo for t in pending):
        from cp_debug.compare import kernels

        kernels.warm_up_in_background()  # numba's start (~1 s of CPU) while the sessions are built
    cal = None
    if any(spec.calibrated for _, spec in opts.pairs):
        from cp_debug.samples.calibration import calibration_of

        cal = calibration_of(samples, opts.calib)
    with contextlib.ExitStack() as stack:
        runners = {label: stack.enter_context(model.runner(spec, **RUNNER_OPTIONS, **_calibrated(spec, cal)))
                   for label, spec in opts.pairs} if any(t.todo for t in pending) else {}
        if opts.metric is None:
            from cp_debug.bisect.findings.decisions import decided_outputs

            opts = replace(opts, decided=decided_outputs(model.subject.stages[0]))  # its graph exported by now
        InProcessExecutor(_SampleWorker(samples, runners, opts), PARTIAL_EVERY).run(
            pending, store, lambda _: progress() if progress else None)
    results = store.results()
    ranked, _ = rank_frames(results, factor=math.inf, mode=opts.tolerance_mode)  # outputs only: no layer class
    reports, ranked = _bisect_worst(model, samples, ranked, opts, step, cal)
    return SampleSweep(ranked, reports, samples.source, sum(r.status == "failed" for r in results), cal,
                       samples.shapes(), tuple(results), opts.decided)


def judged_at(model, opts: SampleSweepOptions) -> SampleSweepOptions:
    """`opts` with each deployed candidate's judged precision: the precision its files hold (an `ort@DIR` of INT4
    weights: int4w-a8 with its measured unit, not FP32's budget), as bisect judges it."""
    judged = {label: model.deployed_files(spec).judged(spec) for label, spec in opts.pairs[1:]
              if spec.onnx_dir is not None}
    return replace(opts, judged=judged)


def _calibrated(spec, cal) -> dict:
    """A calibrated candidate's runner keywords: the sweep's calibration feeds."""
    return {"calib_feeds": list(cal.feeds)} if cal is not None and spec.calibrated else {}


class _SampleWorker:
    """The samples' worker for `executor.InProcessExecutor` (the frame loop of a CenterPoint sweep, whose shard
    files it writes on a helper thread, each frame rendered once): each sample through every lane, the next one
    read (its .npz loaded, checked and cast) on a helper thread meanwhile, and judged on another while the next one
    runs (one sample's outputs waiting at most)."""

    def __init__(self, samples, runners: dict, opts: SampleSweepOptions):
        self.samples, self.runners, self.opts = samples, runners, opts

    def run_frames(self, items):
        from concurrent.futures import ThreadPoolExecutor

        items = list(items)
        with ThreadPoolExecutor(1, thread_name_prefix="cpdebug-sample") as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="cpdebug-judge") as judge:
            coming = reader.submit(self.samples.read, items[0][0]) if items else None
            judging = None
            for k, (index, _) in enumerate(items):
                sample = coming.result()
                coming = reader.submit(self.samples.read, items[k + 1][0]) if k + 1 < len(items) else None
                ran = _run_lanes(index, sample, self.runners, self.opts)
                if judging is not None:
                    yield judging.result()
                judging = judge.submit(_judged, ran, self.opts) if isinstance(ran, tuple) else None
                if judging is None:
                    yield ran
            if judging is not None:
                yield judging.result()


def judge_feed(index: int, sample, runners: dict, opts: SampleSweepOptions) -> FrameResult:
    """One sample (`samples.sets.Sample`, or the `SampleError` in its place) through every lane and judged, or
    failed with why: one sample of the sweep, as the shape-range search judges each shape (`shape_range/`)."""
    ran = _run_lanes(index, sample, runners, opts)
    return _judged(ran, opts) if isinstance(ran, tuple) else ran


def _run_lanes(index: int, sample, runners: dict, opts: SampleSweepOptions):
    """(index, name, reference's outputs, each candidate's, its inputs) of one sample; or, where it cannot be read or
    run, its failed `FrameResult`, with why."""
    from cp_debug.samples.sets import SampleError

    if isinstance(sample, SampleError):
        return FrameResult(index, sample.name, "failed", sample.reason)
    (ref_label, _), cands = opts.pairs[0], opts.pairs[1:]
    try:
        ref = runners[ref_label].infer(dict(sample.feed))
    except CpDebugError as err:  # the model's own limit, not a candidate's failure (`reference_failed`)
        return FrameResult(index, sample.name, "failed", f"{REFERENCE_FAILS} {ref_label}: {str(err).splitlines()[0]}")
    try:
        got = {label: runners[label].infer(dict(sample.feed)) for label, _ in cands}
    except CpDebugError as err:
        return FrameResult(index, sample.name, "failed", str(err).splitlines()[0])
    return index, sample.name, ref, got, sample.feed


REFERENCE_FAILS = "the reference cannot run it:"  # a failed sample's reason where the reference raised


def reference_failed(result: FrameResult) -> bool:
    """The sample failed because the reference itself could not run it (the model's limit: a BERT's positions)."""
    return result.status == "failed" and (result.reason or "").startswith(REFERENCE_FAILS)


def _judged(ran: tuple, opts: SampleSweepOptions) -> FrameResult:
    """One sample's candidates judged against its reference by the one judge (`samples/judge.py`)."""
    from cp_debug.bisect.findings.decisions import outcome_with
    from cp_debug.samples.judge import judge_sample, tolerance

    index, name, ref, got, feed = ran
    frames = []
    for label, spec in opts.pairs[1:]:
        precision, unit = opts.at(label, spec)
        j = judge_sample(ref, got[label], precision, tolerance(precision, opts.atol, opts.rtol), opts.tolerance_mode,
                         unit)
        probes = tuple(ProbeStat(o.diff.name, k, o.diff.rel_rmse, o.diff.rel_max, o.diff.cosine, o.diff.max_abs,
                                 o.diff.nan, o.diff.inf, status_of(o.diff, o.judgement),
                                 o.judgement.expected_rel_rmse, o.judgement.noise_ratio)
                       for k, o in enumerate(j.outputs))
        decisions = _decisions(ref, got[label], feed, opts, precision)
        outcome, reason = outcome_with(decisions, j.outcome, j.reason)  # a changed metric: diverged, as bisect
        frames.append(CandidateFrame(label, probes, NO_BOXES, outcome is not Outcome.WITHIN_PRECISION,
                                     outcome.value, reason, precision, decisions))
    status = worst(Outcome(c.outcome) for c in frames).value
    reason = next((c.reason for c in frames if c.outcome == status and c.reason), None)
    return FrameResult(index, name, status, reason, 0, tuple(frames))


def _decisions(ref: dict, got: dict, feed, opts: SampleSweepOptions, precision: str | None = None) -> tuple:
    """One candidate's decisions on one sample (`feed`: its inputs), as bisect reads them
    (`bisect/findings/decisions.py`): the `--metric`'s value, the reference's and the candidate's (always kept), with
    the margin it moved at where one is known; else each Sigmoid / Softmax output read at 0.5 / its argmax (kept
    where it flips), each flip's margin against the candidate's error there and `precision`'s budget."""
    from cp_debug.bisect.findings.decisions import metric_decision, read_decisions, with_margin

    if opts.metric is not None:
        found = metric_decision(opts.metric, list(ref), ref, got, feed)
        return tuple(with_margin(found, opts.metric, opts.decided, ref, got, precision))
    return tuple(d for d in read_decisions(opts.decided, ref, got, precision) if d.changed)


def _bisect_worst(model, samples, ranked: list, opts: SampleSweepOptions, step, cal=None) -> tuple[dict, list]:
    """The `bisect_top` worst samples beyond the precision bisected on their worst candidate; each report written to
    `out/bisect/<sample>.json`, the ranked samples given their root cause."""
    from cp_debug.samples.sets import SampleError
    from cp_debug.sweep.explain import bisect_flagged

    specs = dict(opts.pairs)
    reference = opts.pairs[0]
    bisect_opts = bisect_options(opts, cal)

    def bisect_one(r):
        sample = samples.read(r.index)
        if isinstance(sample, SampleError):
            raise CpDebugError(sample.reason)
        return model.bisect(sample.feed, reference, (r.candidate, specs[r.candidate]), bisect_opts)

    def weight_only_at(r) -> bool:  # judged by its segments' own roundings: only a bisect measures those
        return weight_only(opts.at(r.candidate, specs[r.candidate])[0]) and r.status != "failed"

    reports, ranked = bisect_flagged(opts.out, ranked, opts.bisect_top, step, bisect_one, opts.runs_on,
                                     also=weight_only_at)
    return reports, [own_outcome(r, reports.get(r.token)) if r.bisected and weight_only_at(r) else r for r in ranked]


def own_outcome(r, rep) -> object:
    """A weight-only candidate's sample (`RankedFrame`) judged as bisect judged it (`rep`): its outputs hold its
    weights' rounding carried through the layers (3 units), and only its bisect measures each segment's own error
    against what its own roundings explain (`compare/weight_only.py`: the massive channel's lm_head, 2.6-3.3 units
    alone, with its logits within 3): the bisect's outcome where it is worse, with its reason."""
    from cp_debug.bisect.result import BisectReport

    c = next((c for c in rep.candidates if c.label == r.candidate), None) if isinstance(rep, BisectReport) else None
    if c is None or c.outcome is None or r.outcome is None or c.outcome.severity <= r.outcome.severity:
        return r
    why = f"as bisected: {c.outcome_reason}" if c.outcome_reason else None
    verdicts = tuple(replace(v, outcome=c.outcome, reason=why or v.reason) if v.candidate == r.candidate else v
                     for v in r.verdicts)
    return replace(r, status=c.outcome.value, outcome=c.outcome, reason=why or r.reason, verdicts=verdicts)


def write_sample_files(result: SampleSweep, doc: dict, out: Path, html: bool | Path) -> None:
    """frames.parquet (a row per sample x candidate x output) and report.html (or the file `html` names; none where
    False) of a sample sweep or a shape-range search in `out`, each written whole, as a CenterPoint sweep writes
    them (issue 117: `--out`'s help promised them on every entry)."""
    from cp_debug.files import write_atomic, write_text_atomic
    from cp_debug.sweep.frames_file import sample_rows

    def parquet(f) -> None:
        sample_rows(result, doc).to_parquet(f, index=False)

    write_atomic(Path(out) / "frames.parquet", parquet)
    if html:
        from cp_debug.sweep.report_html import render_samples_html

        write_text_atomic(Path(out) / "report.html" if html is True else Path(html), render_samples_html(doc))


def bisect_options(opts: SampleSweepOptions, cal=None):
    """bisect's `BisectOptions` of a sample sweep's bisects (its level, seed, tolerances, calibration feeds)."""
    from cp_debug.bisect.engine import BisectOptions

    return BisectOptions(level=opts.level, deterministic=opts.deterministic, seed=opts.seed, atol=opts.atol,
                         rtol=opts.rtol, tolerance_mode=opts.tolerance_mode,
                         calib_feeds=tuple(cal.feeds) if cal is not None else (), metric=opts.metric)


def sweep_doc(result: SampleSweep, opts: SampleSweepOptions, model) -> dict:
    """sweep.json of a sample sweep: the frames' entries in the shape `summary.py` reads (table, JUnit)."""
    from cp_debug.sweep.explain import FrameFailure, root_cause_counts

    decided = {f.token: {c.candidate: [d.to_json() for d in c.decisions] for c in f.candidates if c.decisions}
               for f in result.results}
    frames = []
    for r in result.ranked:
        w = r.worst
        frames.append({
            "rank": r.rank, "token": r.token, "index": r.index, "status": r.status,
            "outcome": r.outcome.value if r.outcome else None, "outcome_reason": w.reason if w else None,
            "reason": r.reason, "class": None, "candidate": r.candidate,
            "worst_probe": w.worst_probe if w else None, "worst_ratio": w.worst_ratio if w else None,
            "local_probe": None, "root_cause": r.root_cause, "hint": r.hint, "bisected": r.bisected,
            **({"near_tie": list(r.near_tie)} if r.near_tie else {}),
            "detections": {}, "candidates": {v.candidate: {"outcome": v.outcome.value, "reason": v.reason}
                                             for v in r.verdicts},
            "shape": _shape_json((result.shapes or {}).get(r.token)), "decisions": decided.get(r.token, {})})
    rc = root_cause_counts(result.ranked)
    flips = decision_flips(frames, opts.metric, result.decided)
    counts = {s: sum(f["status"] == s for f in frames)
              for s in ("within_precision", "inconclusive", "degraded", "diverged", "failed")}
    outcome = _outcome(result.ranked)
    verdict = (f"{outcome.words}: {counts['diverged']} diverged, {counts['degraded']} degraded, {counts['failed']} "
               f"failed of {len(frames)} samples"
               + (f"; {flips['text']}" if flips["flipped"] or flips.get("held") else "")
               + (f"; {rc['text']}" if rc["text"] else ""))
    return {"schema": SCHEMA, "kind": MANIFEST_KIND, "model": model.source, "samples": result.source,
            "reference": opts.pairs[0][0], "candidates": [label for label, _ in opts.pairs[1:]],
            "tolerance_mode": opts.tolerance_mode, "outcome": outcome.value, "verdict": verdict,
            "summary": {"frames": len(frames), "degraded": counts["degraded"], "diverged": counts["diverged"],
                        "failed": counts["failed"], "outcomes": counts, "decisions": flips},
            "root_cause_counts": rc,
            "frames": frames, "bisect": {t: rep.to_json() if isinstance(rep, FrameFailure) else f"bisect/{t}.json"
                                        for t, rep in result.reports.items()},
            "calibration": result.calibration.to_json() if result.calibration is not None else None,
            "by_shape": shape_groups(frames)}


def decision_flips(frames: list[dict], metric, decided: dict) -> dict:
    """sweep.json's `summary.decisions`: the rule the samples' decisions were read by (`--metric NAME`, else the
    Sigmoid / Softmax outputs at 0.5 / argmax), and how many of the samples that ran (and which share) flip one."""
    ran = [f for f in frames if f["status"] != "failed"]
    flipped = [f["token"] for f in ran if any(d["changed"] for ds in f["decisions"].values() for d in ds)]
    rule = (f"--metric {metric.name}" if metric is not None else
            ", ".join(f"{n} at {'0.5' if op == 'Sigmoid' else 'its argmax'}" for n, op in decided.items()))
    share = len(flipped) / len(ran) if ran else 0.0
    text = (f"the decision ({rule}) flips on {len(flipped)} of {len(ran)} samples ({100 * share:.0f} %)"
            if rule else "")
    held = metric is not None and bool(ran) and not flipped  # a declared metric: said where it held on every one
    text = f"the decision ({rule}) held on all {len(ran)} samples" if held else text
    return {"rule": rule or None, "flipped": len(flipped), "samples": len(ran), "share": share,
            "tokens": flipped, "text": text, **({"held": held} if metric is not None else {})}


def _shape_json(shapes: dict | None) -> dict | None:
    return {n: list(s) for n, s in shapes.items()} if shapes is not None else None


def shape_groups(frames: list[dict]) -> list[dict]:
    """sweep.json's frames grouped by their input shapes (the groups in the order of their worst-ranked frame):
    each group's shape, its samples' tokens in rank order, their outcomes counted and the worst of them."""
    groups: dict[str, dict] = {}
    for f in frames:
        if f.get("shape") is None:
            continue
        key = ",".join(f"{n}={'x'.join(map(str, s))}" for n, s in f["shape"].items())
        g = groups.setdefault(key, {"shape": f["shape"], "label": key, "samples": [], "outcomes": {}})
        g["samples"].append(f["token"])
        g["outcomes"][f["status"]] = g["outcomes"].get(f["status"], 0) + 1
    order = ("failed", "diverged", "degraded", "inconclusive", "within_precision")
    for g in groups.values():
        g["worst"] = next(s for s in order if s in g["outcomes"])
    return list(groups.values())


def _outcome(ranked: list) -> Outcome:
    """The worst sample's outcome; a failed sample counts as diverged (its numbers could not be judged)."""
    return worst(r.outcome if r.outcome is not None else Outcome.DIVERGED for r in ranked)

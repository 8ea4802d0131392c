"""`cpdebug eval --torch | --onnx`: a task metric per backend over a model's samples, with a bootstrap interval, and
the samples whose result changes named. Every backend's runner is built once and reused over the samples (the model
is loaded and exported once: the module recipe's `ModuleModel`); only each sample's scores are kept.

The metric and how a changed sample is told are the recipe's (`samples/tasks.py`); each candidate's outcome on
a sample is the one judge's (`samples/judge.py` over `compare/noise.py`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cp_debug.compare.noise import Outcome, worst
from cp_debug.errors import CpDebugError


@dataclass(frozen=True)
class Interval:
    """A mean over samples and its bootstrap percentile interval (95%)."""

    mean: float
    low: float
    high: float

    def to_json(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high}

    def text(self) -> str:
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"


def bootstrap(values: Sequence[float], resamples: int, seed: int = 0) -> Interval:
    """The mean of `values` and the 2.5–97.5 percentile interval of `resamples` resampled means (0: none)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    m = float(v.mean())
    if resamples <= 0 or v.size == 1:
        return Interval(m, m, m)
    idx = np.random.default_rng(seed).integers(0, v.size, size=(resamples, v.size))
    means = v[idx].mean(axis=1)
    return Interval(m, float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


@dataclass(frozen=True)
class CandidateMetric:
    """One candidate over the samples: its metric, its drop from the reference's (paired bootstrap), the samples
    whose result changed (`changed`: name, reference's value, candidate's), and its outcome on every sample."""

    label: str
    metric: Interval
    drop: Interval
    changed: tuple[tuple[str, float, float], ...]
    outcomes: dict[str, str]  # sample -> within_precision | degraded | diverged

    @property
    def outcome(self) -> Outcome:
        return worst(Outcome(o) for o in self.outcomes.values())

    @property
    def reason(self) -> str | None:
        """The samples beyond the precision, in a few words (None: none)."""
        bad = [s for s, o in self.outcomes.items() if o != Outcome.WITHIN_PRECISION.value]
        return f"{len(bad)} of {len(self.outcomes)} samples beyond the precision: {', '.join(bad[:5])}" + \
            (" …" if len(bad) > 5 else "") if bad else None

    def to_json(self) -> dict:
        return {"metric": self.metric.to_json(), "drop": self.drop.to_json(),
                "changed": [{"sample": s, "reference": r, "candidate": c} for s, r, c in self.changed],
                "outcome": self.outcome.value, "outcomes": self.outcomes}


@dataclass(frozen=True)
class SamplesEval:
    """An eval of a generic model: the metric per backend (the reference first), each candidate's change."""

    metric: str
    reference: str
    reference_metric: Interval
    candidates: tuple[CandidateMetric, ...]
    samples: int
    failed: tuple[tuple[str, str], ...]  # (sample, why) of the samples that could not run
    source: str
    calibration: object = None  # samples.calibration.Calibration, where a candidate is calibrated

    @property
    def outcome(self) -> Outcome:
        return worst([*(c.outcome for c in self.candidates), *([Outcome.DIVERGED] if self.failed else [])])

    def to_json(self) -> dict:
        """The shape of eval's JSON report (docs/schemas/eval.schema.json): `metrics` and `verdicts` per backend, the
        task metric under its own keys."""
        labels = [self.reference, *(c.label for c in self.candidates)]
        intervals = {self.reference: self.reference_metric, **{c.label: c.metric for c in self.candidates}}
        return {"reference": self.reference, "backends": labels, "metric": self.metric, "samples": self.samples,
                "source": self.source, "outcome": self.outcome.value,
                "metrics": {k: {"metric": v.to_json(), "num_samples": self.samples} for k, v in intervals.items()},
                "verdicts": {c.label: {"candidate": c.label, "outcome": c.outcome.value, "reason": c.reason,
                                       **c.to_json()} for c in self.candidates},
                "failed": [{"sample": s, "reason": r} for s, r in self.failed],
                "calibration": self.calibration.to_json() if self.calibration is not None else None}


def run_samples_eval(model, samples, pairs, metric, *, resamples: int = 1000, seed: int = 0, mode: str = "model",
                     atol: float | None = None, rtol: float | None = None, progress=None,
                     calib: Path | Sequence[Path] | None = None) -> SamplesEval:
    """Every sample of `samples` (`samples.sets.SampleSet`) through the backends `pairs` ((label, spec),
    the reference first) of `model` (`ModuleModel`), scored by `metric` (`TaskMetric`); a calibrated candidate
    calibrates on `calib` (`--calib`), else on the set's first samples (`samples/calibration.py`)."""
    from cp_debug.samples.judge import judge_sample, tolerance
    from cp_debug.samples.sets import SampleError

    ref_label, cands = pairs[0][0], pairs[1:]
    values: dict[str, list[float]] = {label: [] for label, _ in pairs}
    names: list[str] = []
    changed: dict[str, list] = {label: [] for label, _ in cands}
    outcomes: dict[str, dict[str, str]] = {label: {} for label, _ in cands}
    failed = []
    cal = None
    if any(spec.calibrated for _, spec in pairs):
        from cp_debug.samples.calibration import calibration_of

        cal = calibration_of(samples, calib)
    with contextlib.ExitStack() as stack:
        runners = {label: stack.enter_context(model.runner(spec, **(
            {"calib_feeds": list(cal.feeds)} if cal is not None and spec.calibrated else {}))) for label, spec in pairs}
        for sample in samples:
            if isinstance(sample, SampleError):
                failed.append((sample.name, sample.reason))
                continue
            try:
                outs = {label: runners[label].infer(dict(sample.feed)) for label, _ in pairs}
            except CpDebugError as err:
                failed.append((sample.name, str(err).splitlines()[0]))
                continue
            ref = outs[ref_label]
            ref_value = metric.value(ref, ref, sample.label, sample.feed)
            values[ref_label].append(ref_value)
            names.append(sample.name)
            for label, spec in cands:
                v = metric.value(outs[label], ref, sample.label, sample.feed)
                values[label].append(v)
                j = judge_sample(ref, outs[label], spec.precision, tolerance(spec.precision, atol, rtol), mode)
                outcomes[label][sample.name] = j.outcome.value
                if metric.changed(v, ref_value) if metric.discrete else j.outcome is not Outcome.WITHIN_PRECISION:
                    changed[label].append((sample.name, ref_value, v))
            if progress:
                progress()
    ref_values = np.asarray(values[ref_label])
    out = tuple(CandidateMetric(label, bootstrap(values[label], resamples, seed),
                                bootstrap(ref_values - np.asarray(values[label]), resamples, seed),
                                tuple(changed[label]), outcomes[label]) for label, _ in cands)
    return SamplesEval(metric.name, ref_label, bootstrap(ref_values, resamples, seed), out, len(names),
                       tuple(failed), samples.source, cal)


def print_eval(report, console) -> None:
    """The metric per backend with its interval, each candidate's drop and the samples that changed."""
    from rich.table import Table

    t = Table(title=f"eval: {report.metric} over {report.samples} samples ({report.source})")
    for h in ("backend", report.metric, "drop vs " + report.reference, "outcome", "samples changed"):
        t.add_column(h)
    t.add_row(report.reference, report.reference_metric.text(), "", "reference", "")
    for c in report.candidates:
        names = ", ".join(s for s, _, _ in c.changed[:8]) + (" …" if len(c.changed) > 8 else "")
        t.add_row(c.label, c.metric.text(), c.drop.text(), c.outcome.words, f"{len(c.changed)}: {names}" if names
                  else "0")
    from cp_debug.report.table import print_whole

    print_whole(console, t)
    for s, r in report.failed:
        console.print(f"failed: {s}: {r}", highlight=False)

"""A generic fix's task metric (`fix --torch | --onnx … --metric NAME|FILE.py:FUNC`, the metrics of `eval --metric`:
`samples/tasks.py`): on each sample, the reference's value, the plain candidate's (before) and the written
file's (after), all against the FP32 graph's outputs; and the samples whose task result changes from the reference's.

A discrete metric (a class, a token) counts a sample changed where its value differs from the reference's; a
continuous one (cosine, snr) where the noise model judges the sample beyond the candidate's precision, the one judge
the fix's verification applies (`SampleFigures.passed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from cp_debug.samples.sets import Sample
    from cp_debug.samples.tasks import TaskMetric


Figures = object  # a sample's `fix.module.SampleFigures` (what `passed` says), not imported: module imports this


@dataclass(frozen=True)
class SampleScore:
    """One sample's metric: the reference's value, the plain candidate's (None: not run) and the written file's."""

    sample: str
    reference: float
    before: float | None
    after: float
    changed_before: bool | None
    changed_after: bool

    def to_json(self) -> dict:
        return {"sample": self.sample, "reference": self.reference, "before": self.before, "after": self.after,
                "changed_before": self.changed_before, "changed_after": self.changed_after}


@dataclass(frozen=True)
class MetricFigures:
    """The metric over one part of the samples (`held_out`: the verification's; `search`: the search's)."""

    name: str
    part: str
    scores: tuple[SampleScore, ...]

    @property
    def reference(self) -> float:
        return _mean(s.reference for s in self.scores)

    @property
    def before(self) -> float | None:
        if any(s.before is None for s in self.scores):
            return None
        return _mean(s.before for s in self.scores)

    @property
    def after(self) -> float:
        return _mean(s.after for s in self.scores)

    @property
    def changed_before(self) -> tuple[str, ...]:
        return tuple(s.sample for s in self.scores if s.changed_before)

    @property
    def changed_after(self) -> tuple[str, ...]:
        return tuple(s.sample for s in self.scores if s.changed_after)

    def text(self) -> str:
        """`top1 on 6 held-out sample(s): 0.833 (s09 changed) → 1 (none changed)`, in a line."""
        def part(value, changed):
            names = ", ".join(changed[:8]) + (" …" if len(changed) > 8 else "")
            return f"{value:.4g} ({names} changed)" if changed else f"{value:.4g} (none changed)"

        where = "held-out" if self.part == "held_out" else "search"
        head = f"{self.name} on {len(self.scores)} {where} sample(s), reference {self.reference:.4g}: "
        if self.before is None:
            return head + part(self.after, self.changed_after)
        return head + f"before {part(self.before, self.changed_before)} → after {part(self.after, self.changed_after)}"

    def to_json(self) -> dict:
        return {"name": self.name, "part": self.part, "samples": len(self.scores), "reference": self.reference,
                "before": self.before, "after": self.after, "changed_before": list(self.changed_before),
                "changed_after": list(self.changed_after), "per_sample": [s.to_json() for s in self.scores]}


def score(metric: "TaskMetric", part: str, samples: Sequence["Sample"], expected: Sequence[Mapping],
          after: Sequence[Mapping], after_figures: Sequence["Figures"], before: Sequence[Mapping] = (),
          before_figures: Sequence["Figures"] = ()) -> MetricFigures:
    """Each sample's metric for the reference's outputs (`expected`), the written file's (`after`) and, where given,
    the plain candidate's (`before`), every one against `expected`."""
    out = []
    for k, (s, ref) in enumerate(zip(samples, expected)):
        r = metric.value(ref, ref, s.label, s.feed)
        a = metric.value(after[k], ref, s.label, s.feed)
        b = metric.value(before[k], ref, s.label, s.feed) if before else None
        out.append(SampleScore(s.name, r, b, a, None if b is None else _changed(metric, b, r, before_figures[k]),
                               _changed(metric, a, r, after_figures[k])))
    return MetricFigures(metric.name, part, tuple(out))


def _changed(metric: "TaskMetric", value: float, reference: float, figures: "Figures") -> bool:
    return metric.changed(value, reference) if metric.discrete else not figures.passed


def _mean(values) -> float:
    v = [float(x) for x in values]
    return sum(v) / len(v) if v else math.nan


def outputs_of(values: Sequence[Mapping[str, "np.ndarray"]], names: Sequence[str]) -> list[dict]:
    """Only the graph outputs of each sample's values (a reference run exposes probes besides), in graph order."""
    return [{n: v[n] for n in names} for v in values]

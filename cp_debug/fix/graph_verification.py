"""The verification of a generic fix (`fix --torch / --onnx`, `fix/module.py`) and of its `fix --check`: the written
file on the held-out samples, each sample judged (`SampleFigures`, as the search judges its own), and — where the
samples come in several shapes (a model with dynamic axes: a sequence of 64 to 4,096 tokens) — whether it holds at
each shape, said per shape in fix.json (`verification.shapes`) and on the terminal: a cure that holds on short inputs
and not on long ones is no cure."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cp_debug.compare.diff import TensorDiff, Tolerance


@dataclass(frozen=True)
class SampleFigures:
    """One sample's graph outputs against the reference: the worst (rel. RMSE), those that do not pass as a cure
    (`cure_judge.passes`) and those within their budget (`within`: a plain candidate's are the outputs a fix is held
    to by their budget alone on this sample, `held`)."""

    sample: str
    worst_output: str | None
    worst_rel_rmse: float
    bad_outputs: tuple[str, ...]
    within: tuple[str, ...] | None = None  # None: not recorded (a fix.json written before it was)

    @property
    def passed(self) -> bool:
        return not self.bad_outputs

    @classmethod
    def of(cls, sample: str, diffs: Sequence[TensorDiff], precision: str, judgements: Mapping | None = None,
           held: frozenset | None = frozenset()) -> SampleFigures:
        """Judged as a cure is everywhere (`compare/cure_judge.passes`): within the tolerance and `precision`'s
        budget, or within the budget alone for the outputs `held` (within it in the plain candidate on this sample;
        None: this run is the plain candidate's, its own within held, as bisect's verdict judges it); `judgements`:
        INT8's, by the budget an output's input carries where it applies (`carried_outputs`)."""
        from cp_debug.compare import cure_judge
        from cp_debug.compare.noise import judge

        def badness(d):
            r = d.rel_rmse
            return (d.status != "ok", float("inf") if r != r else r)

        judged = [(d, (judgements or {}).get(d.name) or judge(d, precision)) for d in diffs]
        within = cure_judge.held_of(judged)
        held = within if held is None else held
        worst = max(diffs, key=badness, default=None)
        return cls(sample, worst.name if worst else None, worst.rel_rmse if worst else 0.0,
                   tuple(d.name for d, j in judged if not cure_judge.passes(d, precision, j, d.name in held)),
                   tuple(sorted(within)))

    def to_json(self) -> dict:
        return {"sample": self.sample, "passed": self.passed, "worst_output": self.worst_output,
                "worst_rel_rmse": self.worst_rel_rmse, "bad_outputs": list(self.bad_outputs),
                **({"within_budget": list(self.within)} if self.within is not None else {})}


def held_by_sample(before: Sequence[SampleFigures | dict | None]) -> dict[str, frozenset]:
    """Each sample's outputs within their budget in the plain candidate (`before`: its figures, or fix.json's
    `before` of each sample), which a fix's run on that sample is held to by their budget alone (`SampleFigures.of`);
    a sample without them (a fix.json written before they were) holds none: every output judged by its tolerance
    too."""
    out = {}
    for f in before:
        if isinstance(f, dict):
            out[f["sample"]] = frozenset(f.get("within_budget") or ())
        elif f is not None:
            out[f.sample] = frozenset(f.within or ())
    return out


@dataclass(frozen=True)
class ShapeResult:
    """The samples of one input shape (`samples.sets.Sample.shape`: `x[1,64,16]`) and how the file did on them."""

    shape: str
    samples: tuple[str, ...]
    holds: bool
    worst_rel_rmse: float

    def to_json(self) -> dict:
        return {"shape": self.shape, "samples": list(self.samples), "holds": self.holds,
                "worst_rel_rmse": self.worst_rel_rmse}

    def text(self) -> str:
        return (f"{self.shape}: {'holds' if self.holds else 'does not hold'} ({len(self.samples)} sample(s), worst "
                f"rel. RMSE {self.worst_rel_rmse:.3g})")


@dataclass(frozen=True)
class GraphVerification:
    """The written file on the held-out samples (`before`: the plain candidate, nothing kept; `after`: the file);
    `shapes`: each sample's input shapes, where the samples come in several (else empty: one shape, nothing said)."""

    device: str
    precision: str
    tolerance: Tolerance
    after: tuple[SampleFigures, ...]
    before: tuple[SampleFigures, ...] = ()
    held_out: bool = True
    shapes: Mapping[str, str] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return all(f.passed for f in self.after)

    def by_shape(self) -> tuple[ShapeResult, ...]:
        """The verification per input shape, in the samples' order; () where they all have one shape."""
        groups: dict[str, list] = {}
        for f in self.after:
            groups.setdefault(self.shapes.get(f.sample, ""), []).append(f)
        if len(groups) < 2:
            return ()
        return tuple(ShapeResult(shape, tuple(f.sample for f in fs), all(f.passed for f in fs),
                                 max(_worst(f) for f in fs)) for shape, fs in groups.items())

    def to_json(self) -> dict:
        t = self.tolerance
        shapes = self.by_shape()
        return {"holds": self.holds, "outcome": None, "precision": self.precision, "device": self.device,
                "held_out": self.held_out, "tolerance": {"atol": t.atol, "rtol": t.rtol, "max_share": t.max_share},
                "samples": [{"sample": a.sample, "before": b.to_json() if b else None, "after": a.to_json()}
                            for a, b in itertools.zip_longest(self.after, self.before)],
                **({"shapes": [g.to_json() for g in shapes]} if shapes else {})}


def _worst(f: SampleFigures) -> float:
    r = f.worst_rel_rmse
    return float("inf") if r != r else r

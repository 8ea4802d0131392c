"""The contract every finding keeps (issue 108, item 2): a fault class is one examiner, asked in one ordered list.

An examiner says whether it applies to a candidate — by what the candidate's runner can do (`spec.can`), its
precision and whether it runs the user's own files, never by a framework's name — and examines the root cause's
segment: `examine(segment) -> Finding | None`, a finding carrying the number it rests on. The verdict
(`bisect/verdict.py`) is a reducer over the findings of `catalog.EXAMINERS`, in their order:

- *where* (`Role.WHERE`): a finding that places the cause itself — a decision that flips between near ties, an index
  a float rounds across, a tensor whose INT8 / FP8 range loses its values. The first that fires is the root cause
  (the first whose own restoration brought the outputs back, `Finding.measured`, where one did);
  the layer the own-error ranking picked gives way to it. A decision's words replace the layer's hint (rounding did
  not make the error: the choice did); a range's words come first and the probe's own hint after them.
- *why* (`Role.WHY`): the reason at the root cause's segment — the op that overflows or flushes, an eps, an export
  that computes otherwise, a Q/DQ file's scales, the calibration's fit. Each adds its sentence to the hint.
- *run* (`Role.RUN`): what the candidate's run as a whole shows — the deployed graph's own nodes in the root cause's
  segment, a runtime that computes the user's file wrong at its default settings, the root cause restored and run to
  the outputs (`intervention.py`: its words close the hint, `Finding.adds_to_hint`). A finding whose examiner tried a
  keep set at the outputs carries it (`Finding.restores`): the intervention takes it in as a candidate restoration
  (`intervention.settle`) before it speaks, and tries the root the verdict settled on (a look-inside's layer, the
  module the reason names) where it did not yet — one story: the root, its reason, its cure and the confirmation
  name one module and one keep set, or the confirmation says which one holds and why. A finding may decide the outcome
  (`Finding.outcome`): the reducer takes the worst of those and the noise model's.

The root cause itself is proposed by own error (`ranking.py`) and confirmed at the outputs by the intervention before
the verdict (`intervention.confirmed`): a *where* finding that places it elsewhere by its kind alone (a range, not a
decision measured on the reference's choice) gives way to a confirmed cause. "This difference is no error" (a mask's
fill, an overflow its consumer saturates) is a contract of its own (`no_error.py`), asked before a finding is made.

The order is the story's: the same findings give the same verdict at every level, since no examiner reads the level.
An examiner that fails leaves a warning in the report and no finding: the verdict stands on the others.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cp_debug.bisect.result import ProbeResult
    from cp_debug.bisect.run_state import CandidateState, RunState
    from cp_debug.compare.noise import Outcome


class Role(str, enum.Enum):
    WHERE = "where"  # places the cause: a decision, an index, a range
    WHY = "why"  # explains the root cause's segment
    RUN = "run"  # reads the candidate's run as a whole


@dataclass(frozen=True)
class Candidate:
    """What `applies` reads: the run and one candidate's state (its spec, its judged precision, its files)."""

    run: RunState
    state: CandidateState

    @property
    def spec(self):
        return self.state.spec

    @property
    def precision(self) -> str:
        return self.state.judged_at or self.state.spec.precision

    @property
    def ran(self) -> bool:
        """It ran (a candidate its library refused ran nothing: its error is its result)."""
        return self.state.refused is None

    @property
    def own_files(self) -> bool:
        """It runs the user's deployed files (`SPEC@DIR`), not cp_debug's export."""
        return self.state.spec.onnx_dir is not None


@dataclass(frozen=True)
class Segment:
    """What `examine` reads: the candidate's results in execution order, its first divergent probe and the root
    cause the own-error ranking chose (`ranking.py`)."""

    candidate: Candidate
    results: tuple[ProbeResult, ...]
    first_divergent: str | None
    root: str | None

    @property
    def run(self) -> RunState:
        return self.candidate.run

    @property
    def state(self) -> CandidateState:
        return self.candidate.state

    def at(self, root: str | None, results: tuple[ProbeResult, ...] | None = None) -> "Segment":
        """The same candidate's segment ending at another root cause (a *where* finding, or the owner, moved it),
        over `results` where the move measured more."""
        return Segment(self.candidate, self.results if results is None else results, self.first_divergent, root)


@dataclass(frozen=True)
class Finding:
    """What an examiner found: its fault class, the probe it rests at, its words and the number they rest on."""

    fault: str  # the examiner's fault class (`Examiner.fault`)
    role: Role
    probe: str | None  # where it places the cause (WHERE), or the root cause it explains
    text: str | None  # the sentence the hint carries; None: it adds nothing to say (a range the probe's hint reads)
    number: float | None = None  # the figure it rests on (a margin, a share, a ratio), where it has one
    replaces_hint: bool = False  # WHERE: its words stand for the layer's hint (a decision), else they go first
    outcome: tuple[Outcome, str] | None = None  # an outcome it decides, with its reason
    owner: str | None = None  # the module whose own code holds what it names, where not the probe's
    detail: Any = field(default=None, compare=False)  # its typed object (a ChoiceFlip, a GraphBlame …)
    adds_to_hint: bool = False  # RUN: its words close the root cause's hint (an intervention's, at the outputs)
    # the keep sets it tried at the outputs, each (`restore.Restoration`, `restore.OutputError`): candidate restorations
    # the intervention takes in like a layer's (`intervention.settle`), so that the root, its cure and the confirmation
    # name one keep set
    restores: tuple = field(default=(), compare=False)
    # WHERE: its own restoration brought the outputs back (an intervention of its own, as a decision measured on the
    # reference's choice is): it is not given way to a cause the ranking's intervention confirmed elsewhere
    measured: bool = False
    # WHERE: its words are the whole reason — the mechanism with the keep set it tried at the outputs; the probe's own
    # precision hint and the why findings (the same quantization read as a layer's rounding, a file's re-quantization)
    # are not said beside it
    mechanism: bool = False
    # WHERE: its words carry a cure ladder tried for the probe's own precision reading: that reading and its
    # unverified advice are not said beside it (`hints.HintContext.ladder`)
    ladder: bool = False
    # WHERE: the decision between near ties it places the cause at (its op and node: "ArgMax '/ArgMax_1'"; a MoE's
    # routing: "the router of QMoE '…'"), where the reason is a decision flip no layer's rounding makes (quantized/
    # choice.py, choice_flip.py, flip_why.py, routing.py): the intervention's words where nothing it restored brings
    # the outputs back (`cures/spread.words`), and a layer's note whose own error stands out (`verdict_notes.py`), are
    # said as beside that flip, never as a cause of their own
    tie: str | None = None
    # WHERE: the probes where the same fault sits, in execution order, the root the first of them — one mechanism
    # repeated (a scale no number in every layer's pair, `quantized/same_fault.py`): the root cause carries the set
    repeated: tuple[str, ...] = ()

    def to_json(self) -> dict:
        """Its JSON: a number that is none (NaN: a runtime that refused the file measured nothing) is null."""
        number = self.number if self.number is not None and math.isfinite(self.number) else None
        return {"fault": self.fault, "role": self.role.value, "probe": self.probe, "number": number,
                "text": self.text, "owner": self.owner}


class Examiner(Protocol):
    """One fault class: `applies` by the candidate's capabilities, `examine` on a segment."""

    fault: str
    role: Role

    def applies(self, candidate: Candidate) -> bool: ...

    def examine(self, segment: Segment) -> Finding | None: ...


def examined(examiner: Examiner, segment: Segment) -> Finding | None:
    """`examiner` on `segment` where it applies; where it fails, a warning in the report and no finding."""
    if not examiner.applies(segment.candidate):
        return None
    try:
        return examiner.examine(segment)
    except Exception as err:  # noqa: BLE001 - a finding is evidence beside the verdict; the others stand
        run, state = segment.run, segment.state
        where = f" at {segment.root}" if segment.root else ""
        run.warnings.append(f"{state.label}: the {examiner.fault} check{where} was not worked out: {err}")
        return None

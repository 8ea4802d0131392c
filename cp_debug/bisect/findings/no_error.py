""""This difference is no error" (issue 115, item 7): one contract, kept apart from the findings as Polygraphy keeps its
comparators' thresholds apart from its runners.

An excuse says of one tensor the reference puts beyond the candidate's range why that is harmless there — a mask's
fill that only reaches softmaxes and comparisons (`graph/masks.py`: it saturates to -inf as float16 does), an
overflow whose consumer saturates (`saturation.py`: a tanh-GELU's x³) — and a finding asks `excused` before it names
the tensor (`op_findings.find_overflow`). Guards (SDPA's IsNaN / Where), cancellation judged by its share and small
terms judged by the sum they join (`contribution.py`) say the same of a probe's error; they are read where the
probe is judged (`compare/`), this contract the place a new excuse is added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cp_debug.half import FP16_MAX


class Excuse(Protocol):
    """One reason a value beyond the range is no error: `excuses(graph, tensor, ref, masks)`."""

    kind: str

    def excuses(self, graph, tensor: str, ref: dict, masks: frozenset) -> bool: ...


@dataclass(frozen=True)
class MaskFill:
    """A mask's fill (values at or below -65504 only, in a tensor that only reaches softmaxes and comparisons)."""

    kind: str = "mask fill"

    def excuses(self, graph, tensor: str, ref: dict, masks: frozenset) -> bool:
        v = ref.get(tensor)
        return tensor in masks and v is not None and not (v[np.isfinite(v)] > FP16_MAX).any()


@dataclass(frozen=True)
class Saturated:
    """An overflow whose only road onward ends in a saturated Tanh / Sigmoid / Erf (`saturation.saturates`)."""

    kind: str = "saturated"

    def excuses(self, graph, tensor: str, ref: dict, masks: frozenset) -> bool:
        from cp_debug.bisect.findings.saturation import saturates

        return saturates(graph, tensor, ref)


EXCUSES: tuple[Excuse, ...] = (MaskFill(), Saturated())


def excused(graph, tensor: str, ref: dict, masks: frozenset = frozenset()) -> str | None:
    """The first excuse that holds for `tensor` (its kind), else None."""
    return next((e.kind for e in EXCUSES if e.excuses(graph, tensor, ref, masks)), None)

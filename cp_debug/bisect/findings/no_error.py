""""This difference is no error" (issue 115, item 7): one contract, kept apart from the findings as Polygraphy keeps its
comparators' thresholds apart from its runners.

An excuse says of one tensor the reference puts beyond the candidate's range why that is harmless there — a mask's
fill that only reaches softmaxes and comparisons (`graph/masks.py`: it saturates to -inf as float16 does), an
overflow whose consumer saturates (`saturates`: a tanh-GELU's x³, whose only road onward is element-wise
arithmetic into a `Tanh` / `Sigmoid` / `Erf` whose FP32 input at those elements is deep in saturation, so float16's
±Inf gives the ±1 (0 / 1) FP32 gives) — and a finding asks `excused` before it names
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
    """An overflow whose only road onward ends in a saturated Tanh / Sigmoid / Erf (`saturates`)."""

    kind: str = "saturated"

    def excuses(self, graph, tensor: str, ref: dict, masks: frozenset) -> bool:
        return saturates(graph, tensor, ref)


EXCUSES: tuple[Excuse, ...] = (MaskFill(), Saturated())


def excused(graph, tensor: str, ref: dict, masks: frozenset = frozenset()) -> str | None:
    """The first excuse that holds for `tensor` (its kind), else None."""
    return next((e.kind for e in EXCUSES if e.excuses(graph, tensor, ref, masks)), None)


SATURATING = {"Tanh": 4.5, "Sigmoid": 12.0, "Erf": 4.0}  # |z| beyond which float16's result is the limit's
PASS_THROUGH = frozenset({"Add", "Sub", "Mul", "Div", "Neg", "Cast", "Identity"})
DEEP = 4.5


def saturates(graph, tensor: str, ref: dict, depth: int = 6) -> bool:
    """Every element of `tensor` beyond float16's range reaches only saturating ops (through element-wise
    arithmetic), each of whose FP32 inputs is saturated at those elements."""
    v = ref.get(tensor)
    if v is None or not v.size:
        return False
    over = np.abs(np.asarray(v, dtype=np.float64)) > FP16_MAX
    readers = [n for n in graph.node if tensor in n.input]
    outputs = {o.name for o in graph.output}
    if not readers or tensor in outputs or depth == 0:
        return False
    for n in readers:
        if n.op_type in SATURATING:
            z = ref.get(n.input[0])
            if z is None or np.shape(z) != over.shape or not (np.abs(z)[over] >= SATURATING[n.op_type]).all():
                return False
        elif n.op_type in PASS_THROUGH:
            if not all(saturates(graph, t, {**ref, t: _carried(ref, t, over)}, depth - 1) for t in n.output):
                return False
        else:
            return False
    return True


def _carried(ref: dict, t: str, over: np.ndarray) -> np.ndarray:
    """The reader's output marked out of range where the out-of-range elements pass through (same shape), else
    its own reference value."""
    v = ref.get(t)
    if v is not None and np.shape(v) == over.shape:
        return np.where(over, np.inf, np.asarray(v, dtype=np.float64))
    return np.full(over.shape, np.inf) if v is None else np.asarray(v)

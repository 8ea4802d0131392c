"""An overflow its consumer saturates (issue 115, item 2): told apart from one that propagates.

A tanh-approximated GELU computes 0.044715·x³, which leaves float16's range for |x| > 40 and becomes Inf; its only
road onward is through element-wise arithmetic into a `Tanh` (or a `Sigmoid`, an `Erf`) whose FP32 input at those
elements is already deep in saturation (|z| ≥ `DEEP`), so float16's ±Inf gives the ±1 (0 / 1) FP32 gives: no error
leaves it. `saturates` says so from the graph and the reference's values; such an overflow is no finding of its own
(`op_findings.find_overflow`), and restoring it changes nothing at the outputs (`intervention.py`).
"""

from __future__ import annotations

import numpy as np

from cp_debug.half import FP16_MAX

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

"""A weight's INT8 rounding as the mechanism where a run shows it (issue 115, item 2): "per-tensor and per-channel
weight rounding both read as rounding".

A user's Q/DQ file whose weight is the reference's rounded at the file's own scale
(`quantized/stored_weight._weight_rounding`) says that rounding where it is large of itself (a rel. RMS error past
`WEIGHT_OFF`, most nonzero values to zero).
A smaller one can still hold the decision where the layers after it amplify it: open_nsfw's stem conv `Conv__440`
(its BatchNorm folded in), rounded per tensor at a step of 4.66e-5 — 15.6 % of its weights to zero, a rel. RMS error of
0.027 — moves 3 of 20 images' bands. So where the intervention's layer at the decision (`decision_layer`) had its
weight alone read in float (`decision_layer.weight_in_float`, one run) and that brought the declared decision back,
the rounding is said whatever its size, with that run and, per tensor, the output channels one step serves: the
channel whose |w| max sets it, how far it lies above the channels' median, and how many hold at most `FEW` levels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cp_debug.bisect.cures.set_search import Tried
    from cp_debug.bisect.run_state import CandidateState

FEW = 8  # an output channel whose |w| max spans at most this many levels of the tensor's step


def shown(state: "CandidateState", weight: str) -> "Tried | None":
    """The intervention's run of the file's weight `weight` (its integer initializer) alone read in float, where it
    brought every decision back that the candidate moved; None otherwise."""
    from cp_debug.bisect.cures.restore import CONSTANT

    found = state.intervention
    if found is None or not found.before.flips:
        return None
    return next((t for t in found.tried if len(t.restored) == 1 and t.restored[0].how == CONSTANT
                 and t.restored[0].tensor == weight and not t.after.flips and not t.after.unbuilt), None)


def channels(ref: np.ndarray, scale: np.ndarray) -> str:
    """Per tensor (one `scale`): the output channels (axis 0) that one step serves, the one whose |w| max sets it;
    "" per channel or for a weight of one channel."""
    if np.size(scale) != 1 or ref.ndim < 2 or ref.shape[0] < 2:
        return ""
    amax = np.abs(ref).reshape(ref.shape[0], -1).max(axis=1)
    step, top, median = float(np.asarray(scale).reshape(-1)[0]), int(np.argmax(amax)), float(np.median(amax))
    few = int(np.count_nonzero(amax <= FEW * step))
    apart = f", {float(amax[top]) / median:.3g}× their median |w| max" if median > 0 else ""
    return (f"; one step for its {ref.shape[0]} output channels, set by channel {top} (|w| max {float(amax[top]):.3g}"
            f"{apart}): {few} of them hold at most {FEW} levels")


def run_words(t: "Tried", before_ratio: float, decision: str = "--metric") -> str:
    """The weight-in-float run, said after the rounding (`decision`: the intervention's, `decision_layer.decision`)."""
    from cp_debug.bisect.cures.decision_layer import said

    return (f"; its weight alone read in float brings {said(decision)} back (worst output {before_ratio:.3g}× → "
            f"{t.after.ratio:.3g}× its budget): the weight's rounding is the mechanism, amplified by the layers after "
            "it")

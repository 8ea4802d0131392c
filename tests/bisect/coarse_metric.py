"""A coarse application decision for `--metric tests/bisect/coarse_metric.py:FUNC` (a decision a small error leaves
alone): the sign of each output's mean."""

from __future__ import annotations

import numpy as np


def mean_sign(outputs, reference, label=None) -> float:
    """1 where every output's mean has the reference's sign, else 0."""
    return float(all(np.sign(np.mean(outputs[k])) == np.sign(np.mean(reference[k])) for k in reference))

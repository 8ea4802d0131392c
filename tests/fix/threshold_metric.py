"""A decision at a threshold for `fix --metric tests/fix/threshold_metric.py:kept`: the share of output elements on
the reference's side of 0.5 (a Sigmoid's scores kept or dropped)."""

from __future__ import annotations

import numpy as np


def kept(outputs, reference, label=None) -> float:
    return float(np.mean([np.mean((np.asarray(outputs[k]) > 0.5) == (np.asarray(reference[k]) > 0.5))
                          for k in reference]))

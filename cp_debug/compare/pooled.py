"""Errors pooled over several arrays (one per scene): one figure for a whole set of held-out scenes."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def rel_rmse(ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> float:
    """||got - ref|| / ||ref|| over all pairs together (float64); 0 for equal zero arrays, inf for a zero ref."""
    num = sum(float(((g.astype(np.float64) - r) ** 2).sum()) for r, g in zip(ref, got))
    den = sum(float((r.astype(np.float64) ** 2).sum()) for r in ref)
    return math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf)

"""The Q/DQ formats a finding names (int8, uint8, float8 e4m3fn: 'fp8') and their levels: what a user's file's pair
can hold, read from its DequantizeLinear (`qdq_file_why.py`, `mask_fill.py`) through the one reader of a pair,
`graph/qdq_pair.py`; `scale_zero` reads a DequantizeLinear's own scale and zero point along its axis."""

from __future__ import annotations

import numpy as np

from cp_debug.graph.qdq_pair import INITIALIZER
from cp_debug.graph.qdq_pair import LEVELS as TYPE_LEVELS
from cp_debug.graph.qdq_pair import own_pair

FORMATS = {"int8": "int8", "uint8": "uint8", "float8e4m3fn": "fp8"}  # a pair's quantized type → the format's word
LEVELS = {fmt: TYPE_LEVELS[qtype] for qtype, fmt in FORMATS.items()}  # each Q/DQ format's levels
LOST = 0.5  # a share of the nonzero values a pair rounds to zero worth naming (a file's range, a stored weight)


def qdq_format(zero_point) -> str | None:
    """The Q/DQ format a pair's zero point (an initializer) is stored in (int8, uint8, fp8), else None."""
    from onnx import TensorProto

    if zero_point is None:
        return None
    return FORMATS.get(TensorProto.DataType.Name(zero_point.data_type).lower())


def pair_ends(dq, inits: dict) -> tuple[float, float] | None:
    """A per-tensor DequantizeLinear's range, [low, high]; None where it is per channel or not a Q/DQ format (its
    scale and zero point initializers)."""
    pair = own_pair(dq, inits)
    if pair is None or pair.zero_from != INITIALIZER or pair.scale_from != INITIALIZER or pair.qtype not in FORMATS:
        return None
    return pair.ends


def scale_zero(dq, inits: dict, ndim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A DequantizeLinear's scale and zero point (float64), shaped to broadcast against a tensor of `ndim` dimensions
    along its `axis` where they are per channel (`graph/qdq_pair.QdqPair.broadcast`); None where its scale is no
    initializer."""
    pair = own_pair(dq, inits)
    return pair.broadcast(ndim) if pair is not None and pair.scale_from == INITIALIZER else None

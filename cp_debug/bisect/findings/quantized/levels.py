"""The levels of a Q/DQ pair's formats (int8, uint8, float8 e4m3fn): what a user's file's pair can hold, read from
its DequantizeLinear (`qdq_file_why.py`, `mask_fill.py`)."""

from __future__ import annotations

import numpy as np

LEVELS = {"int8": (-128.0, 127.0), "uint8": (0.0, 255.0), "fp8": (-448.0, 448.0)}  # each Q/DQ format's levels


def qdq_format(zero_point) -> str | None:
    """The Q/DQ format a pair's zero point is stored in (int8, uint8, fp8), else None."""
    from onnx import TensorProto

    if zero_point is None:
        return None
    return {TensorProto.INT8: "int8", TensorProto.UINT8: "uint8",
            TensorProto.FLOAT8E4M3FN: "fp8"}.get(zero_point.data_type)


def pair_ends(dq, inits: dict) -> tuple[float, float] | None:
    """A per-tensor DequantizeLinear's range, [low, high]; None where it is per channel or not a Q/DQ format."""
    from onnx import numpy_helper

    fmt = qdq_format(inits.get(dq.input[2]) if len(dq.input) > 2 else None)
    if fmt is None or dq.input[1] not in inits or dq.input[2] not in inits:
        return None
    scale, zero = (numpy_helper.to_array(inits[x]).astype(np.float64) for x in dq.input[1:3])
    if scale.size != 1 or zero.size != 1:
        return None
    return tuple(float((level - zero.item()) * scale.item()) for level in LEVELS[fmt])

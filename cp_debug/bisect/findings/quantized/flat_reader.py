"""Values beyond an INT8 pair's range that its readers saturate on (issue 115, item 2: "an overflow whose consumer
saturates told apart from one that propagates", read where a user's Q/DQ file's range is judged,
`qdq_file_why._range`).

An LSTM's gate pre-activations feed a Sigmoid or a Tanh: ONNX Runtime's `quantize_static` calibrated on some images
sets the pair before the gate to [-13.8, 15] where the judged ones reach [-20, 21.2] (captcha-whisperer's CRNN,
`/lstm_bwd/cell_1/Split_output_3`: 0.35% beyond). Clipped at 15, the gate reads sigmoid(15) = 1 − 3e-7 where it would
have read 1 − 7e-10: no error its reader keeps. Leaving the pair out changed the output's error by nothing (0.0551 →
0.0551) — yet the clip was the root's reason. A value beyond the range is no clip where every reader of the pair is a
function that saturates there (Sigmoid, Tanh; a Relu below a low end ≤ 0), read directly or through ops that only move
values (the Split into an LSTM's gates, a Reshape, the file's Q/DQ pairs), and reads the clipped value within half a
step of its own output's pair (where the file quantizes that output too), else within FP16's half ulp at 1 (2^-11)
of the function's span.
"""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.quantized.levels import LEVELS
from cp_debug.graph.qdq_pair import own_pair

FLAT = {  # the element-wise readers that saturate, and the span of their output (what their tolerance is a share of)
    "Sigmoid": (lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)), 1.0),
    "Tanh": (np.tanh, 2.0),
    "Relu": (lambda x: np.maximum(x, 0.0), 0.0),  # flat below 0 only: no tolerance beyond exact equality
}
MOVES = {"Split", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice", "QuantizeLinear",
         "DequantizeLinear"}  # ops that move values, not change them: the saturating readers behind them count
HALF_ULP = 2.0 ** -11  # FP16's half ulp at 1: a reader's output change below it, times its span, is no error


def unheeded(producer: dict, inits: dict, dq_out: str, value: np.ndarray, scale, zero, fmt: str) -> np.ndarray:
    """The elements of `value` (the reference's, entering the pair ending at `dq_out`, whose `scale` and `zero`
    broadcast against it) the pair clips and no reader keeps the difference of: a mask's fill the softmax weighs at
    nothing (`mask_fill.unweighed_fill`) or a value its readers saturate on (module docstring). A boolean array."""
    from cp_debug.bisect.findings.quantized.mask_fill import unweighed_fill

    lo, hi = (LEVELS[fmt][0] - zero) * scale, (LEVELS[fmt][1] - zero) * scale
    return unweighed_fill(producer, inits, dq_out, value, lo) | saturated_beyond(producer, inits, dq_out, value, lo, hi)


def saturated_beyond(producer: dict, inits: dict, dq_out: str, value: np.ndarray, lo, hi) -> np.ndarray:
    """The elements of `value` beyond [`lo`, `hi`] that every reader of `dq_out` maps to what it maps the clipped
    value to, within its tolerance (module docstring)."""
    value = np.asarray(value, np.float64)
    beyond = (value < lo) | (value > hi)
    nodes = list({id(n): n for n in producer.values()}.values())
    readers = _readers(nodes, dq_out)
    if not beyond.any() or not readers:
        return np.zeros(value.shape, bool)
    clipped = np.clip(value, lo, hi)
    for n in readers:
        f, span = FLAT[n.op_type]
        read = f(clipped)
        at = float(np.max(np.abs(read[beyond]))) if beyond.any() else 0.0  # what it reads there: its step's place
        beyond &= np.abs(f(value) - read) <= _tolerance(n, nodes, inits, span, at)
    return beyond


def _readers(nodes: list, tensor: str, hops: int = 6) -> list:
    """The saturating readers of `tensor` (`FLAT`), through the ops that only move its values (a Split into an LSTM's
    gates, a Reshape, a Transpose …) and the file's Q/DQ pairs between; [] where any path reaches another op."""
    found = []
    for n in (n for n in nodes if tensor in n.input):
        if n.op_type in FLAT:
            found.append(n)
            continue
        if n.op_type not in MOVES or hops == 0:
            return []
        for out in n.output:
            more = _readers(nodes, out, hops - 1)
            if not more:
                return []
            found += more
    return found


def _tolerance(reader, nodes: list, inits: dict, span: float, at: float) -> float:
    """Half a level of the pair `reader`'s output enters (where the file quantizes it) at `at`, the reader's output
    there — its scale for integer levels of any width (int8, int16, int4), a float8's spacing there (the pair's own
    reading, `graph/qdq_pair.QdqPair.spacing`) —, else FP16's half ulp of the reader's span."""
    q = [n for n in nodes if reader.output[0] in n.input]
    dq = [n for n in nodes if len(q) == 1 and q[0].op_type == "QuantizeLinear" and q[0].output[0] in n.input]
    pair = own_pair(dq[0], inits) if len(dq) == 1 and dq[0].op_type == "DequantizeLinear" else None
    width = pair.spacing(at) if pair is not None else None
    return width / 2 if width is not None else HALF_ULP * span

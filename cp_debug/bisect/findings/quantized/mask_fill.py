"""A mask's fill an INT8 pair clips (issue 115, item 7: "this difference is no error", read where a user's Q/DQ file's
range is judged, `qdq_file_why._range`).

`transformers` fills a masked attention's logits with finfo.min (-3.4e38); ONNX Runtime's `quantize_static`
calibrated on unpadded samples sets the logits' pair to the real scores' range (rxnmapper's ALBERT: [-38.6, 40.1])
and the mask's own pair to [-128, 127]: 42.83% of a padded batch's values "lie beyond", and leaving the pairs out
changes the output's error by nothing (0.382 → 0.382). A clipped value is a fill the softmax weighs at nothing
where, every clipped value a fill (at or below -65504, no value a layer computes):
- the pair is read by a softmax alone, and the clipped fill still weighs, row by row, at most FP32's epsilon of the
  row's largest weight (`graph/masks.masked_fill`);
- or the pair feeds Adds only (the mask added to each layer's scores), each output clipped again by a pair a softmax
  alone reads, low enough that the clipped fill plus the scores' largest value still clips to that pair's low end: the
  softmax sees the same level either way.
"""

from __future__ import annotations

import numpy as np

from cp_debug.bisect.findings.quantized.levels import pair_ends
from cp_debug.half import FP16_MAX


def unweighed_fill(producer: dict, inits: dict, dq_out: str, value: np.ndarray, lo) -> np.ndarray:
    """The elements of `value` (the reference's, entering the pair ending at `dq_out`) below the pair's low end `lo`
    that are a mask's fill the softmax weighs at nothing (module docstring), in the file whose nodes write
    `producer`'s tensors. A boolean array of `value`'s shape."""
    from cp_debug.graph.masks import masked_fill, softmax_axis

    nodes = list({id(n): n for n in producer.values()}.values())
    none = np.zeros(np.shape(value), bool)
    axis = softmax_axis(nodes, dq_out)
    if axis is not None:
        return masked_fill(value, lo, axis)
    below = value < lo
    if not below.any() or (below & (value > -FP16_MAX)).any():
        return none  # nothing clipped, or a clipped value that is no fill
    readers = [n for n in nodes if dq_out in n.input]
    undone = bool(readers) and all(_clipped_again(n, nodes, producer, inits, dq_out, float(np.max(lo)))
                                   for n in readers)
    return below if undone else none


def _clipped_again(add, nodes, producer: dict, inits: dict, dq_out: str, lo: float) -> bool:
    """Whether `add` adds the pair ending at `dq_out` to scores read through a pair, into a pair a softmax alone
    reads whose low end the clipped fill plus the scores' largest value still lies at or below."""
    if add.op_type != "Add" or dq_out not in add.input[:2]:
        return False
    other = producer.get(add.input[1 - list(add.input[:2]).index(dq_out)])
    scores = pair_ends(other, inits) if other is not None and other.op_type == "DequantizeLinear" else None
    after = _pair_to_softmax(nodes, add.output[0])
    low = pair_ends(after, inits) if after is not None else None
    return scores is not None and low is not None and lo + scores[1] <= low[0]


def _pair_to_softmax(nodes, tensor: str):
    """The DequantizeLinear of the pair `tensor` enters, where a softmax alone reads it; else None."""
    from cp_debug.graph.masks import softmax_axis

    q = [n for n in nodes if tensor in n.input]
    if len(q) != 1 or q[0].op_type != "QuantizeLinear":
        return None
    dq = [n for n in nodes if q[0].output[0] in n.input]
    if len(dq) != 1 or dq[0].op_type != "DequantizeLinear" or softmax_axis(nodes, dq[0].output[0]) is None:
        return None
    return dq[0]

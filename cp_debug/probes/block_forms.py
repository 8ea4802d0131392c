"""Weight-only block formats read as the float op they stand for (issue 116), for `quantized_forms._Rewrite`:
MatMulNBits (com.microsoft: ONNX Runtime GenAI's model builder, `MatMulNBitsQuantizer`; 4 or 8 bits, block-wise
scales, zero points or none, any accuracy_level) as MatMul of a float weight of [K, N], its output the MatMul's name;
GatherBlockQuantized as the embedding's Gather. The weights are stand-ins of the float shape (the view is never run).
Each function takes the rewrite (`rw`: its initializers, names, the nodes it puts where a node stood)."""

from __future__ import annotations

import onnx
from onnx import helper


def stand_in(name: str, data_type: int, dims) -> onnx.TensorProto:
    """An initializer of `dims` without its values: what the alignment reads of a weight."""
    t = onnx.TensorProto()
    t.name, t.data_type = name, data_type
    t.dims.extend(dims)
    return t


def _stand_in_weight(rw, w: str, dims: list[int]) -> str:
    """A float stand-in constant of `dims` for the packed weight `w` (its unpacked float shape)."""
    name = w + "::float"
    if name not in rw.names:
        rw.names.add(name)
        rw.extra_inits.append(stand_in(name, onnx.TensorProto.FLOAT, dims))
    return name


def nbits(rw, i: int, n: onnx.NodeProto) -> None:
    """MatMulNBits(A, B packed [N, blocks, blob], scales, …, bias at slot 5; attributes K, N) → MatMul(A, W of
    [K, N]) [+ Add(bias)]: the weight-only matmul as the float one it stands for."""
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    k, cols = attrs.get("K"), attrs.get("N")
    if not k or not cols or len(n.input) < 2:
        return
    w = _stand_in_weight(rw, n.input[1], [int(k), int(cols)])
    y = n.output[0]
    if len(n.input) < 6 or not n.input[5]:
        rw.put[i] = [helper.make_node("MatMul", [n.input[0], w], [y], name=n.name or y)]
        return
    inner = y + "::matmul"
    rw.inner.add(inner)
    rw.put[i] = [helper.make_node("MatMul", [n.input[0], w], [inner], name=n.name or y),
                   helper.make_node("Add", [inner, n.input[5]], [y], name=(n.name or y) + "::bias")]


def block_gather(rw, i: int, n: onnx.NodeProto) -> None:
    """GatherBlockQuantized(data [vocab, hidden (packed for 4 bits)], ids, scales, …) → Gather(W [vocab, hidden],
    ids): the embedding it stands for (the hidden size from the scales' blocks × block_size)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    data, scales = rw.inits.get(n.input[0]), rw.inits.get(n.input[2]) if len(n.input) > 2 else None
    if data is None or scales is None or len(data.dims) != 2 or attrs.get("gather_axis", 0) != 0:
        return
    hidden = int(scales.dims[-1]) * int(attrs.get("block_size", 128))
    w = _stand_in_weight(rw, n.input[0], [int(data.dims[0]), hidden])
    rw.put[i] = [helper.make_node("Gather", [w, n.input[1]], [n.output[0]], name=n.name or n.output[0])]


BLOCK_FORMS = {"MatMulNBits": nbits, "GatherBlockQuantized": block_gather}

"""The Q/DQ pair a tensor is read through, read in one place: its scale and zero point, the levels of its type (from
the zero point's element type, as ONNX defines them), its axis and block size, its clip ends in real units, its
QuantizeLinear and DequantizeLinear node(s), and where its constants come from (an initializer or a `Constant` node).

Every finding and cure that reads a Q/DQ file's pairs (the built-in's amax, a user's file's steps, ranges, fills and
flushes) asks `QdqIndex.of(model).pair(tensor or node)` — the graph indexed once — for a `QdqPair`. A pair whose scale
or zero point is no constant (computed by the graph) is not read (None). A pair with no zero point reads ONNX's
default: zero, of the QuantizeLinear's `output_dtype` where it has one, else uint8 (a DequantizeLinear of a stored
tensor: that tensor's type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# the levels of each quantized type ONNX defines (the largest finite magnitude of the float ones), by the zero point's
# element type as `TensorProto.DataType.Name(...).lower()` names it
LEVELS: dict[str, tuple[float, float]] = {
    "int8": (-128.0, 127.0), "uint8": (0.0, 255.0), "int16": (-32768.0, 32767.0), "uint16": (0.0, 65535.0),
    "int32": (-2147483648.0, 2147483647.0), "int4": (-8.0, 7.0), "uint4": (0.0, 15.0), "int2": (-2.0, 1.0),
    "uint2": (0.0, 3.0), "float8e4m3fn": (-448.0, 448.0), "float8e4m3fnuz": (-240.0, 240.0),
    "float8e5m2": (-57344.0, 57344.0), "float8e5m2fnuz": (-57344.0, 57344.0), "float4e2m1": (-6.0, 6.0),
}
# the float types' stored mantissa bits and smallest normal (in units of the scale): their spacing at a value
FLOAT_BITS: dict[str, tuple[int, float]] = {
    "float8e4m3fn": (3, 2.0 ** -6), "float8e4m3fnuz": (3, 2.0 ** -7), "float8e5m2": (2, 2.0 ** -14),
    "float8e5m2fnuz": (2, 2.0 ** -15), "float4e2m1": (1, 1.0),
}
INITIALIZER, CONSTANT = "initializer", "Constant"  # where a pair's scale / zero point come from


@dataclass(frozen=True, eq=False)
class QdqPair:
    """One Q/DQ pair, read from the node asked of (`QdqIndex.pair`): `tensor` is what it quantizes (the tensor its
    QuantizeLinear reads; a stored tensor its DequantizeLinear reads where there is no QuantizeLinear); `scale`
    (float64) and `zero` (float64, its values) as stored, per tensor (`axis` None) or along `axis`, in blocks of
    `block_size` (0: none); `qtype` the quantized type ('int8', 'uint8', 'float8e4m3fn' …) and `qmin` / `qmax` its
    levels; `quantize` the QuantizeLinear (None: a stored tensor), `dequantize` the DequantizeLinear node(s) reading
    it; `scale_from` / `zero_from` where the constants come from (`INITIALIZER`, `CONSTANT`; zero_from None: no zero
    point, ONNX's default zero)."""

    tensor: str
    scale: np.ndarray
    zero: np.ndarray
    qtype: str
    qmin: float
    qmax: float
    axis: int | None
    block_size: int
    quantize: object | None  # onnx.NodeProto
    dequantize: tuple  # onnx.NodeProto, …
    scale_name: str
    scale_from: str
    zero_from: str | None

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1

    @property
    def step(self) -> float | None:
        """The per-tensor scale (one level's width), else None."""
        return float(self.scale.reshape(-1)[0]) if self.per_tensor else None

    def spacing(self, at: float) -> float | None:
        """One level's width at the real value `at` (a per-tensor pair; else None): its scale for integer levels
        (int8, int16, int4 …), a float type's spacing in the binade of `at` / scale (its smallest normal's below)."""
        s = self.step
        if s is None or not self.is_float:
            return s
        bits, normal = FLOAT_BITS[self.qtype]
        return s * 2.0 ** (np.floor(np.log2(max(abs(at) / s, normal))) - bits)

    @property
    def lo(self) -> np.ndarray:
        """The lowest value the pair holds, in real units, per scale: (qmin - zero) · scale."""
        return (self.qmin - self.zero) * self.scale

    @property
    def hi(self) -> np.ndarray:
        return (self.qmax - self.zero) * self.scale

    @property
    def ends(self) -> tuple[float, float] | None:
        """(lo, hi) of a per-tensor pair, else None."""
        if not self.per_tensor or self.zero.size != 1:
            return None
        z, s = float(self.zero.reshape(-1)[0]), float(self.scale.reshape(-1)[0])
        return (self.qmin - z) * s, (self.qmax - z) * s

    @property
    def is_float(self) -> bool:
        return self.qtype.startswith("float")

    @property
    def from_initializers(self) -> bool:
        """Whether the scale and the zero point (where there is one) are initializers."""
        return self.scale_from == INITIALIZER and self.zero_from in (None, INITIALIZER)

    def broadcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero) shaped to broadcast against a tensor of `ndim` dimensions along the pair's axis (per tensor:
        as stored)."""
        if self.axis is None:
            return self.scale, self.zero
        shape = [1] * ndim
        shape[self.axis] = -1
        return self.scale.reshape(shape), (self.zero.reshape(shape) if self.zero.size > 1 else self.zero)


class QdqIndex:
    """A graph's nodes indexed once for their Q/DQ pairs (`QdqIndex.of(model)`): its initializers, its `Constant`
    nodes, each tensor's writer and readers (graph order, each reader once)."""

    def __init__(self, nodes, inits: dict):
        self.inits = inits
        self.constants = {n.output[0]: n for n in nodes if n.op_type == "Constant" and n.output}
        self.writer = {o: n for n in nodes for o in n.output if o}
        self.position = {id(n): i for i, n in enumerate(nodes)}  # each node's place in the graph's order
        self.readers: dict[str, list] = {}
        for n in nodes:
            for x in dict.fromkeys(n.input):
                if x:
                    self.readers.setdefault(x, []).append(n)

    @classmethod
    def of(cls, model: "onnx.ModelProto") -> QdqIndex:
        return cls(model.graph.node, {i.name: i for i in model.graph.initializer})

    def constant(self, name: str) -> tuple[np.ndarray, str] | None:
        """The value of the constant tensor `name` and where it comes from (`INITIALIZER`, `CONSTANT`), else None."""
        from onnx import helper, numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name]), INITIALIZER
        node = self.constants.get(name)
        attr = next((a for a in node.attribute if a.name.startswith("value")), None) if node is not None else None
        if attr is None or attr.name in ("value_string", "value_strings", "sparse_value"):
            return None
        value = helper.get_attribute_value(attr)
        return (numpy_helper.to_array(value) if attr.name == "value" else np.asarray(value)), CONSTANT

    def _elem_type(self, name: str, value: np.ndarray) -> int:
        """The ONNX element type of the constant `name`: its initializer's, its `Constant`'s, else its value's."""
        from onnx import helper

        if name in self.inits:
            return self.inits[name].data_type
        attr = next((a for a in self.constants[name].attribute if a.name == "value"), None)
        return attr.t.data_type if attr is not None else helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)

    def float_behind(self, t: str) -> str | None:
        """The float tensor behind the Q/DQ pair writing `t` (`float_behind`)."""
        return float_behind(self.writer, t)

    def quantizers(self, scale: str) -> list:
        """The QuantizeLinear nodes whose scale is the tensor `scale` (graph order): the pairs sharing it."""
        return [n for n in self.readers.get(scale, ()) if n.op_type == "QuantizeLinear" and n.input[1:2] == [scale]]

    def pair(self, at) -> QdqPair | None:
        """The pair `at` names: a QuantizeLinear or DequantizeLinear node (its own scale and zero point), or a tensor
        — the one a DequantizeLinear writes, else the first QuantizeLinear reading it; None where there is none or
        its scale or zero point is no constant."""
        if isinstance(at, str):
            w = self.writer.get(at)
            node = w if w is not None and w.op_type == "DequantizeLinear" else next(
                (n for n in self.readers.get(at, ()) if n.op_type == "QuantizeLinear" and n.input[0] == at), None)
            return self.pair(node) if node is not None else None
        if at is None or at.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(at.input) < 2:
            return None
        if at.op_type == "QuantizeLinear":
            q = at
        else:
            w = self.writer.get(at.input[0])
            q = w if w is not None and w.op_type == "QuantizeLinear" else None
        dqs = tuple(n for n in self.readers.get(q.output[0], ()) if n.op_type == "DequantizeLinear"
                    and n.input[0] == q.output[0]) if q is not None else (at,)
        return self._read(at, q, dqs)

    def _read(self, node, q, dqs: tuple) -> QdqPair | None:
        from onnx import TensorProto

        scale = self.constant(node.input[1])
        zname = node.input[2] if len(node.input) > 2 and node.input[2] else None
        zero = self.constant(zname) if zname is not None else None
        if scale is None or (zname is not None and zero is None):
            return None
        if zero is not None:
            qtype = TensorProto.DataType.Name(self._elem_type(zname, zero[0])).lower()
        elif q is None and node.input[0] in self.inits:  # a stored tensor: its own type
            qtype = TensorProto.DataType.Name(self.inits[node.input[0]].data_type).lower()
        else:
            dtype = next((a.i for a in (q.attribute if q is not None else ()) if a.name == "output_dtype"), 0)
            qtype = TensorProto.DataType.Name(dtype or TensorProto.UINT8).lower()
        if qtype not in LEVELS:
            return None
        s = np.asarray(scale[0]).astype(np.float64)
        z = np.asarray(zero[0]).astype(np.float64) if zero is not None else np.zeros(())
        attrs = {a.name: a.i for a in node.attribute if a.name in ("axis", "block_size")}
        block = int(attrs.get("block_size", 0))
        axis = int(attrs.get("axis", 1)) if s.size > 1 or block else None
        return QdqPair(q.input[0] if q is not None else node.input[0], s, z, qtype, *LEVELS[qtype], axis, block, q,
                       dqs, node.input[1], scale[1], zero[1] if zero is not None else None)



def float_behind(writer: dict, t: str) -> str | None:
    """The float tensor behind the Q/DQ pair writing `t` — the tensor its QuantizeLinear reads, where a
    DequantizeLinear writes `t` from a QuantizeLinear's output —, else None. `writer`: each tensor's writing node (a
    caller's own index of the graph, or `QdqIndex.writer`)."""
    dq = writer.get(t)
    q = writer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None


def own_pair(node, inits: dict) -> QdqPair | None:
    """A QuantizeLinear's or DequantizeLinear's own scale and zero point read from `inits` alone (its pair's other
    nodes unknown: `quantize` None where `node` is a DequantizeLinear, `dequantize` (node,))."""
    return QdqIndex([node], inits).pair(node)

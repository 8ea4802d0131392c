"""LayerNorms in an ONNX graph, fused or decomposed: where FP16 deployments of ConvNeXt-style models break.

A LayerNorm computes Var[x] = mean((x - mean(x))^2): in float16 the square passes 65504 once |x - mean| > 256,
and the variance is inf (then the output 0 or NaN) although every input is in range. At opset >= 17 the
exporters emit one `LayerNormalization` node (whose stash_type=1 asks for float32 statistics); below 17, or from
other tools, it is a chain ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div, whose Pow and
second ReduceMean run in float16 when the graph is converted. `layernorm_sites` finds both forms, so the keep-FP32
search can offer their nodes and a hint can say what overflowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import onnx

# |x - mean| beyond this makes (x - mean)^2 overflow float16 (256^2 = 65536 > 65504)
FP16_LAYERNORM_LIMIT = 256.0


@dataclass(frozen=True)
class LayerNormSite:
    """One LayerNorm: its node names in execution order, the normalised tensor and the normalised output."""

    nodes: tuple[str, ...]
    input: str
    output: str
    fused: bool  # one LayerNormalization node (else the decomposed chain)


def layernorm_sites(model: "onnx.ModelProto") -> tuple[LayerNormSite, ...]:
    """Every LayerNormalization node and every decomposed chain (ReduceMean, Sub, Pow 2 or Mul, ReduceMean, Add,
    Sqrt, Div or Reciprocal+Mul), in graph order."""
    nodes = list(model.graph.node)
    producer = {t: n for n in nodes for t in n.output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    constants = scalar_constants(model)

    def only(tensor: str, op: str):
        users = [u for u in consumers.get(tensor, []) if u.op_type == op]
        return users[0] if users else None

    sites = []
    for node in nodes:
        if node.op_type == "LayerNormalization":
            sites.append(LayerNormSite((node.name,), node.input[0], node.output[0], True))
            continue
        square = node.op_type == "Pow" and constants.get(node.input[1]) == 2.0
        square = square or (node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1])
        if not square:
            continue
        sub = producer.get(node.input[0])
        if sub is None or sub.op_type != "Sub":
            continue
        mean = producer.get(sub.input[1])
        if mean is None or mean.op_type != "ReduceMean" or mean.input[0] != sub.input[0]:
            continue
        chain = [mean, sub, node]
        var = only(node.output[0], "ReduceMean")
        add = var and only(var.output[0], "Add")
        sqrt = add and only(add.output[0], "Sqrt")
        if not sqrt:
            continue
        chain += [var, add, sqrt]
        div = only(sqrt.output[0], "Div")
        if div is None:
            rec = only(sqrt.output[0], "Reciprocal")
            div = rec and only(rec.output[0], "Mul")
            chain += [rec] if rec else []
        chain += [div] if div else []
        out = chain[-1].output[0]
        sites.append(LayerNormSite(tuple(n.name for n in chain), sub.input[0], out, False))
    return tuple(sites)


def layernorm_nodes(model: "onnx.ModelProto") -> frozenset[str]:
    """The names of every node that belongs to a LayerNorm (fused or decomposed)."""
    return frozenset(name for site in layernorm_sites(model) for name in site.nodes)


def scalar_constants(model: "onnx.ModelProto") -> dict[str, float]:
    """Tensor name -> value of every one-element initializer and Constant node of `model`."""
    from onnx import numpy_helper

    out: dict[str, float] = {}
    for init in model.graph.initializer:
        if all(d == 1 for d in init.dims):  # a scalar or a one-element tensor
            out[init.name] = float(numpy_helper.to_array(init).reshape(-1)[0])
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    arr = numpy_helper.to_array(attr.t)
                    if arr.size == 1:
                        out[node.output[0]] = float(arr.reshape(-1)[0])
    return out

"""Ops a file writes out one by one, read as the one op they compute: the view `foreign.py` aligns.

An exporter below opset 17 (TorchScript's `opset_version=16`, TensorFlow's converters, a hand-written norm) writes a
LayerNorm as ReduceMean → Sub → Pow → ReduceMean → Add(eps) → Sqrt → Div → Mul(weight) → Add(bias), where our own
export has one LayerNormalization: the module's anchor (its weight shapes) is then missing from the file, and every
probe reached from it is "not found in the deployed graph" (50 of 81 on a Q/DQ encoder). Here each such chain,
followed through the Q/DQ pairs and Casts a deployment puts between its ops, becomes a LayerNormalization of its
input, weight and bias, writing the chain's last tensor (the value the file holds): for alignment only, never run.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper
from cp_debug.graph.model import constant_tensors, wiring
from cp_debug.probes.qdq_pairs import PRECISION_STEPS


def fuse_written_layernorms(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with each LayerNorm written as ops replaced by a LayerNormalization node (the model itself where
    there is none)."""
    if sum(n.op_type == "ReduceMean" for n in model.graph.node) < 2:
        return model
    g = _Index(model)
    found = [m for i, n in enumerate(g.nodes) if n.op_type == "ReduceMean" and (m := g.match(i)) is not None]
    if not found:
        return model
    drop = {k for m in found for k in m.nodes}
    put = {max(m.nodes): m for m in found}
    nodes = []
    for i, n in enumerate(g.nodes):
        if i in put:
            m = put[i]
            nodes.append(helper.make_node("LayerNormalization", [m.x, m.weight, m.bias], [m.out], axis=-1,
                                          epsilon=m.eps, name=f"{m.out}_layernorm"))
        elif i not in drop:
            nodes.append(n)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


@dataclass(frozen=True)
class _Written:
    x: str
    weight: str
    bias: str
    eps: float
    out: str
    nodes: frozenset


class _Index:
    def __init__(self, model: onnx.ModelProto):
        self.nodes = list(model.graph.node)
        self.producer, self.consumers = wiring(self.nodes)
        self.values = constant_tensors(model.graph)
        self.constant = set(self.values)
        for n in self.nodes:  # computed from constants only (a weight behind its DequantizeLinear)
            if n.op_type != "Constant" and n.input and all(t in self.constant for t in n.input if t):
                self.constant.update(t for t in n.output if t)

    def origin(self, t: str, seen: set[int]) -> str:
        """`t` traced back through Q/DQ pairs and Casts to the tensor they carry."""
        while t in self.producer and self.nodes[self.producer[t]].op_type in PRECISION_STEPS:
            seen.add(self.producer[t])
            t = self.nodes[self.producer[t]].input[0]
        return t

    def readers(self, t: str, seen: set[int]) -> list[int]:
        """The nodes reading `t`'s value, through Q/DQ pairs and Casts (those passed added to `seen`)."""
        out, todo = [], [t]
        while todo:
            for k in self.consumers.get(todo.pop(), []):
                n = self.nodes[k]
                if n.op_type in PRECISION_STEPS:
                    seen.add(k)
                    todo.extend(n.output[:1])
                else:
                    out.append(k)
        return out

    def _one(self, t: str, op: str, seen: set[int]) -> int | None:
        found = [k for k in self.readers(t, seen) if self.nodes[k].op_type == op]
        return found[0] if len(found) == 1 else None

    def _other(self, k: int, t: str) -> str | None:
        """The input of binary node `k` that is not (a carrier of) `t`, where it is a constant."""
        ins = list(self.nodes[k].input)
        if len(ins) != 2:
            return None
        a, b = (self.origin(x, set()) for x in ins)  # a weight's own DequantizeLinear stays: the view reads it
        if a == t and b != t:
            return ins[1] if ins[1] in self.constant else None
        if b == t and a != t:
            return ins[0] if ins[0] in self.constant else None
        return None

    def _eps(self, name: str) -> float:
        from onnx import numpy_helper

        src = name
        while src not in self.values and src in self.producer and self.nodes[self.producer[src]].input:
            src = self.nodes[self.producer[src]].input[0]  # a DequantizeLinear's quantized value: read as a hint
        try:
            v = numpy_helper.to_array(self.values[src]).reshape(-1)
            return float(v[0]) if v.size == 1 and 0 < float(v[0]) < 1e-2 else 1e-5
        except Exception:  # noqa: BLE001 - an eps of unknown value: the view is for alignment only
            return 1e-5

    def match(self, r1: int) -> _Written | None:
        """The written-out LayerNorm whose first ReduceMean is node `r1`, or None."""
        seen: set[int] = {r1}
        x = self.origin(self.nodes[r1].input[0], set())  # the input's own Q/DQ pair stays: the view reads past it
        mean = self.nodes[r1].output[0]
        sub = self._one(mean, "Sub", seen)
        if sub is None or [self.origin(t, set()) for t in self.nodes[sub].input] != [x, mean]:
            return None
        centred = self.nodes[sub].output[0]
        pow_, div = self._one(centred, "Pow", seen), self._one(centred, "Div", seen)
        if pow_ is None or div is None:
            return None
        r2 = self._one(self.nodes[pow_].output[0], "ReduceMean", seen)
        add_eps = self._one(self.nodes[r2].output[0], "Add", seen) if r2 is not None else None
        if add_eps is None or (eps := self._other(add_eps, self.nodes[r2].output[0])) is None:
            return None
        sqrt = self._one(self.nodes[add_eps].output[0], "Sqrt", seen)
        if sqrt is None or self.origin(self.nodes[div].input[1], seen) != self.nodes[sqrt].output[0]:
            return None
        seen |= {sub, pow_, r2, add_eps, sqrt, div}
        out, weight, bias = self.nodes[div].output[0], "", ""
        mul = self._one(out, "Mul", seen)
        if mul is not None and (w := self._other(mul, out)) is not None:
            seen.add(mul)
            out, weight = self.nodes[mul].output[0], w
            add = self._one(out, "Add", seen)
            if add is not None and (b := self._other(add, out)) is not None:
                seen.add(add)
                out, bias = self.nodes[add].output[0], b
        seen = {k for k in seen if self.nodes[k].op_type not in PRECISION_STEPS or self._inner(k, seen)}
        return _Written(self.nodes[r1].input[0], weight, bias, self._eps(eps), out, frozenset(seen))

    def _inner(self, k: int, nodes: set[int]) -> bool:
        """Whether Q/DQ or Cast node `k` carries a value between the chain's own nodes only (its readers among
        `nodes`, its input made by one of them or a constant), not the chain's input or output."""
        n = self.nodes[k]
        made = n.input[0] in self.constant or self.producer.get(n.input[0]) in nodes
        return made and all(c in nodes for c in self.consumers.get(n.output[0], []))

"""One graph as the structural alignment of `foreign.py` reads it: its float view's producers, consumers,
constants and anchors (the nodes whose weights make them recognisable), and each anchor's structural keys (its
history from the inputs, its future to the outputs) that `foreign.align_anchors` pairs by."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from cp_debug.probes.probe_shapes import constant_shape
from cp_debug.probes.qdq_pairs import MAX_CHAIN, PRECISION_STEPS
from cp_debug.probes.quantized_forms import float_view

# Nodes whose weights make them recognisable: the anchors of the structural alignment (and a Gather of a weight)
ANCHOR_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LayerNormalization", "BatchNormalization",
                        "InstanceNormalization", "GroupNormalization", "LSTM", "GRU", "RNN"})
_SHAPE_OF = frozenset({"Shape", "Size"})  # they read shapes, not values


@dataclass
class _Graph:
    """What the alignment needs of one graph: producers, consumers, constants, anchors in order."""

    model: onnx.ModelProto
    producer: dict[str, tuple[int, int]] = field(default_factory=dict)  # tensor -> (node index, output slot)
    consumers: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # tensor -> [(node, input slot)]
    constants: dict[str, tuple[int, ...]] = field(default_factory=dict)  # constant tensor -> its shape
    inputs: frozenset = frozenset()
    anchors: list[int] = field(default_factory=list)
    _anchor_set: frozenset = frozenset()
    views: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # FloatView.views
    inner: frozenset = frozenset()  # FloatView.inner: no run reads them
    clipped: frozenset = frozenset()  # FloatView.clipped: a ReLU may be folded into their range
    float_of: dict[str, str] = field(default_factory=dict)  # FloatView.float_of: an integer tensor's float value

    @classmethod
    def of(cls, model: onnx.ModelProto, other: onnx.ModelProto | None = None) -> "_Graph":
        """The graph of `model`'s float view beside `other` (`quantized_forms.float_view`): quantized forms as ops."""
        view = float_view(model, other)
        g = cls(view.model, views=view.views, inner=view.inner, clipped=view.clipped, float_of=view.float_of)
        graph = g.model.graph
        g.constants = {init.name: tuple(init.dims) for init in graph.initializer}
        g.inputs = frozenset(i.name for i in graph.input if i.name not in g.constants)
        for i, node in enumerate(graph.node):
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                g.constants[node.output[0]] = tuple(value.dims) if value is not None else ()
                continue
            if node.input and all(t in g.constants for t in node.input if t):
                # computed from constants only: a weight behind DequantizeLinear (an int8 initializer, or
                # QuantizeLinear of a float one), a Cast or an Identity (TorchScript's shared weights) is still
                # that weight, of the initializer's shape; anything else a constant of unknown shape
                shape = constant_shape(node, g.constants, PRECISION_STEPS | {"Identity"})
                for t in node.output:
                    if t:
                        g.constants[t] = shape
                continue
            for k, t in enumerate(node.output):
                if t:
                    g.producer[t] = (i, k)
            for k, t in enumerate(node.input):
                if t:
                    g.consumers.setdefault(t, []).append((i, k))
            if node.op_type in ANCHOR_OPS or (node.op_type == "Gather" and len(g.constants.get(node.input[0], ())) > 1):
                g.anchors.append(i)
        g._anchor_set = frozenset(g.anchors)
        return g

    def signature(self, i: int) -> tuple:
        node = self.model.graph.node[i]
        return (node.op_type, tuple(self.constants.get(t) for t in node.input if t in self.constants))

    def unpaired(self, paired: set[int]) -> list[int]:
        """The nodes (Constants and nodes computed from constants only aside) not in `paired`, in graph order."""
        return [i for i, n in enumerate(self.model.graph.node) if n.op_type != "Constant" and i not in paired
                and not all(t in self.constants for t in n.output if t)]

    def holds(self, t: str) -> bool:
        """Whether the float view has tensor `t` (the integer tensors inside a quantized form it has not)."""
        return t in self.producer or t in self.inputs or t in self.constants

    def source(self, t: str) -> str:
        """The tensor `t` is a precision's copy of (through Casts and Q/DQ pairs on an activation), else `t`."""
        for _ in range(MAX_CHAIN):
            made = self.producer.get(t)
            node = self.model.graph.node[made[0]] if made else None
            if node is None or node.op_type not in PRECISION_STEPS or not self.computed(node.input[0]):
                return t
            t = node.input[0]
        return t

    def sinks(self, t: str, depth: int = 0) -> list[tuple[int, int]]:
        """(node, input slot) of the consumers of `t`, a Cast's or Q/DQ pair's read as the consumers of its output
        (what a precision put in between)."""
        out = []
        for j, slot in self.consumers.get(t, []):
            node = self.model.graph.node[j]
            if node.op_type in PRECISION_STEPS and slot == 0 and depth < MAX_CHAIN:
                out += [x for o in node.output if o for x in self.sinks(o, depth + 1)]
            else:
                out.append((j, slot))
        return out

    def computed(self, t: str) -> bool:
        return bool(t) and t not in self.constants and (t in self.producer or t in self.inputs)

    def keys(self, kind: str) -> dict[int, int]:
        """Every anchor's structural key: "history" (from the inputs) or "future" (to the outputs)."""
        nodes = self.model.graph.node
        outputs = {o.name for o in self.model.graph.output}
        key: dict[int, int] = {}
        if kind == "history":
            memo: dict[str, frozenset] = {}
            for i in self.anchors:  # graph order is topological: every upstream anchor is keyed first
                ins = tuple(tuple(sorted(key[s] if isinstance(s, int) else hash(s) for s in self._sources(t, memo)))
                            for t in nodes[i].input if self.computed(t))
                key[i] = hash((self.signature(i), ins))
            return key
        memo = {}
        for i in reversed(self.anchors):
            outs = tuple(tuple(sorted(hash((key[s[1]], s[2])) if s[0] == "at" else hash(s)
                                      for s in self._sinks(t, memo, outputs))) for t in nodes[i].output if t)
            key[i] = hash((self.signature(i), outs))
        return key

    def _sources(self, t: str, memo: dict) -> frozenset:
        """The nearest anchors (node indices) or graph inputs (("in", name)) that tensor `t` is computed from."""
        if t not in memo:
            if t in self.inputs:
                memo[t] = frozenset({("in", t)})
            else:
                i, _ = self.producer[t]
                if i in self._anchor_set:
                    memo[t] = frozenset({i})
                elif self.model.graph.node[i].op_type in _SHAPE_OF:  # a shape is no value: nothing flows from it
                    memo[t] = frozenset()
                else:
                    memo[t] = frozenset().union(*(self._sources(x, memo) for x in self.model.graph.node[i].input
                                                  if self.computed(x)))
        return memo[t]

    def _sinks(self, t: str, memo: dict, outputs: set[str]) -> frozenset:
        """The nearest anchors, with the input slot it reaches them in (("at", node index, slot): attention's query
        and key part there), or graph outputs (("out", name)) that tensor `t` flows into."""
        if t not in memo:
            found = {("out", t)} if t in outputs else set()
            for j, k in self.consumers.get(t, []):
                if self.model.graph.node[j].op_type in _SHAPE_OF:  # onnxsim's Reshape sizes read from a Shape
                    continue
                if j in self._anchor_set:
                    found.add(("at", j, k))
                else:
                    for x in self.model.graph.node[j].output:
                        if x:
                            found |= self._sinks(x, memo, outputs)
            memo[t] = frozenset(found)
        return memo[t]

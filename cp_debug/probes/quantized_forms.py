"""A quantized ONNX graph read as the float computation it stands for: the view `foreign.py` aligns.

The tools that quantize a file replace a float op by a pattern of integer ops, keeping the float tensor names around
it where the float value still exists (onnxruntime.quantization, optimum's ORTQuantizer, ORT's own optimizer):
- dynamic INT8 (`quantize_dynamic`): DynamicQuantizeLinear → MatMulInteger / ConvInteger → Cast → Mul(x_scale ·
  w_scale) [→ Add(bias) after a ConvInteger], the Mul (or Add) writing the float op's output name;
- ORT's fused forms (com.microsoft): DynamicQuantizeMatMul(A, B, …, bias), MatMulIntegerToFloat(A_q, B, …, bias);
- an embedding (`Gather` of a float weight) as Gather of a uint8 initializer → DequantizeLinear (its output the name);
- weight-only blocks (com.microsoft, ONNX Runtime GenAI's model builder, `MatMulNBitsQuantizer`): MatMulNBits(A, B
  packed 4/8-bit [N, blocks, blob], scales[, zero points][, g_idx][, bias]) writing the MatMul's output name, and
  GatherBlockQuantized(data, ids, scales[, zero points]) an embedding;
- QOperator (`quantize_static(..., QuantFormat.QOperator)`): QuantizeLinear → QLinearConv / QLinearMatMul / QGemm /
  QLinearAdd / … → DequantizeLinear, the tensors in between integer only (MaxPool, Reshape, … on them as they are).
Each pattern becomes the op it replaces — MatMul, Conv, Gemm, Gather of the (quantized) weight, of its shape — whose
output is the float tensor carrying the value. An integer tensor whose value exists in no float tensor gets a
*dequantized view* (`FloatView.views`): a DequantizeLinear by its own scale and zero point, added to the file only
when a probe reads it (`with_dequantized`); the integer tensors themselves are never a probe's counterpart.
Static Q/DQ pairs stay as they are (`foreign._THROUGH` reads them). A Gemm with a weight is read as MatMul + Add on
both sides (`quantize_dynamic` writes a Gemm as MatMulInteger over the transposed weight, then Add).
The view is for alignment only: it is never run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import onnx
from onnx import helper

from cp_debug.probes.block_forms import BLOCK_FORMS
from cp_debug.probes.constant_values import SMALL
from cp_debug.graph.model import constant_tensors, wiring

# QOperator ops: float op, the slots of their data inputs, the slots of the output's scale and zero point
_QLINEAR = {
    "QLinearConv": ("Conv", (0, 3, 8), (6, 7)),
    "QLinearMatMul": ("MatMul", (0, 3), (6, 7)),
    "QGemm": ("Gemm", (0, 3, 6), (7, 8)),
    "QLinearAdd": ("Add", (0, 3), (6, 7)),
    "QLinearMul": ("Mul", (0, 3), (6, 7)),
    "QLinearSigmoid": ("Sigmoid", (0,), (3, 4)),
    "QLinearLeakyRelu": ("LeakyRelu", (0,), (3, 4)),
    "QLinearSoftmax": ("Softmax", (0,), (3, 4)),
    "QLinearAveragePool": ("AveragePool", (0,), (3, 4)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", (0,), (3, 4)),
}
# ops that move an integer tensor's values unchanged (its scale and zero point hold after them)
_PASS_INT = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Slice",
                       "Pad", "Resize", "DepthToSpace", "SpaceToDepth", "Expand", "Tile", "Split"})
_ATTRIBUTED = frozenset({"Conv", "Gemm", "Concat", "AveragePool", "Softmax", "LeakyRelu"})
_INTEGER = frozenset({onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16, onnx.TensorProto.UINT16,
                      onnx.TensorProto.INT32, onnx.TensorProto.INT4, onnx.TensorProto.UINT4})
VIEW_SUFFIX = "_dequantized"


@dataclass(frozen=True)
class FloatView:
    """`model` as the float computation it stands for (for alignment, never run); `views`: a tensor only the view
    names -> (the integer tensor, its scale, its zero point), readable once a DequantizeLinear writes it; `inner`:
    tensors of the view no run can read (a fused op's value before its bias); `clipped`: the float values of a
    QOperator op's integer output, whose range may hold a ReLU the quantizer folded into it; `float_of`: an integer
    tensor -> the float tensor holding its value (what a module's scope, ending at a quantizer, is read as)."""

    model: onnx.ModelProto
    views: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    inner: frozenset = frozenset()
    clipped: frozenset = frozenset()
    float_of: dict[str, str] = field(default_factory=dict)  # an integer tensor -> the float tensor of its value


def float_view(model: onnx.ModelProto, other: onnx.ModelProto | None = None) -> FloatView:
    """The float view of `model` (the model itself where it holds no quantized form and no Gemm with a weight); a
    LayerNorm written as ops read as one (`written_forms`) where `other`, the graph it is aligned with, holds one op
    and `model` none: where both write it out, its ops' tensors stay probes."""
    from cp_debug.probes.written_forms import fuse_written_layernorms

    def fused(m: onnx.ModelProto | None) -> bool:
        return m is not None and any(n.op_type == "LayerNormalization" for n in m.graph.node)

    if fused(other) and not fused(model):
        model = fuse_written_layernorms(model)
    ops = {n.op_type for n in model.graph.node}
    if not ops & ({"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "Gemm",
                   *BLOCK_FORMS,
                   "DequantizeLinear", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "FusedMatMul",
                   "Gelu"} | set(_QLINEAR) | {"QLinearConcat"}):
        return FloatView(model)
    return _Rewrite(model).run()


def with_dequantized(model: onnx.ModelProto, views: dict[str, tuple[str, str, str]]) -> onnx.ModelProto:
    """`model` with a DequantizeLinear writing each view tensor of `views` (from its integer tensor, scale and zero
    point): what a probe reading a QOperator file's integer-only tensor is exposed as."""
    if not views:
        return model
    import numpy as np
    import onnx_graphsurgeon as gs

    from cp_debug.graph.model import cleanup
    from cp_debug.graph.onnx_files import export_graph

    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    for name, (t, scale, zero) in views.items():
        if name in tensors or t not in tensors:
            continue
        out = gs.Variable(name, dtype=np.float32)
        graph.nodes.append(gs.Node("DequantizeLinear", name=name, inputs=[tensors[t], tensors[scale],
                                                                          tensors[zero]], outputs=[out]))
        graph.outputs.append(out)  # kept through cleanup; the runner exposes or drops it as any probe
    cleanup(graph).toposort()
    graph.outputs = [o for o in graph.outputs if o.name not in views]
    out = export_graph(graph)
    out.ir_version = model.ir_version
    return out


class _Rewrite:
    """One pass over the nodes in graph order, each quantized pattern replaced where its last node stood."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        g = model.graph
        self.nodes = list(g.node)
        self.inits = constant_tensors(g)
        self.producer, self.consumers = wiring(self.nodes)
        self.outputs = {o.name for o in g.output}
        self.drop: set[int] = set()
        self.put: dict[int, list[onnx.NodeProto]] = {}  # node index -> the nodes standing where it stood
        self.float_of: dict[str, str] = {}  # integer tensor -> the float tensor carrying its value
        self.qparams: dict[str, tuple[str, str]] = {}  # integer tensor -> (scale, zero point)
        self.views: dict[str, tuple[str, str, str]] = {}
        self.inner: set[str] = set()
        self.clipped: set[str] = set()
        self.extra_inits: list[onnx.TensorProto] = []
        self.names = set(self.producer) | set(self.inits) | {i.name for i in g.input}

    def run(self) -> FloatView:
        for i, n in enumerate(self.nodes):
            if i not in self.drop:
                self._visit(i, n)
        for i, n in enumerate(self.nodes):  # a DynamicQuantizeLinear whose every reader became a float op
            readers = self.consumers.get(n.output[0], []) if n.output else []
            if n.op_type == "DynamicQuantizeLinear" and all(c in self.drop for c in readers):
                self.drop.add(i)
        nodes = []
        for i, n in enumerate(self.nodes):
            nodes.extend(self.put.get(i, []))
            if i not in self.drop and i not in self.put:
                nodes.append(n)
        view = _shell(self.model)
        view.graph.node.extend(nodes)
        view.graph.initializer.extend(self.extra_inits)
        for n in self.nodes:  # a (Dynamic)QuantizeLinear's output: the value of its input, quantized by the file
            if n.op_type in ("DynamicQuantizeLinear", "QuantizeLinear") and n.input and n.output:
                self.float_of.setdefault(n.output[0], n.input[0])
        return FloatView(view, self.views, frozenset(self.inner), frozenset(self.clipped), dict(self.float_of))

    def _visit(self, i: int, n: onnx.NodeProto) -> None:
        op = n.op_type
        if op in ("MatMulInteger", "ConvInteger"):
            self._dynamic(i, n)
        elif op in ("DynamicQuantizeMatMul", "MatMulIntegerToFloat"):
            self._fused(i, n)
        elif op in BLOCK_FORMS:  # weight-only blocks (block_forms.py)
            BLOCK_FORMS[op](self, i, n)
        elif op == "Gather" and self._int_weight(n.input[0]):
            self._gather(i, n)
        elif op in _QLINEAR or op == "QLinearConcat":
            self._qlinear(i, n)
        elif op == "QuantizeLinear" and len(n.input) > 1:
            self.float_of.setdefault(n.output[0], n.input[0])
            self.qparams[n.output[0]] = (n.input[1], n.input[2] if len(n.input) > 2 else "")
        elif op in _PASS_INT and n.input and n.input[0] in self.qparams and n.input[0] in self.float_of:
            self._passing(i, n)
        elif op == "Gemm":
            self._gemm(i, n)
        elif op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "FusedMatMul", "Gelu"):
            self._ort_fused(i, n)

    # -- helpers -------------------------------------------------------------------------------------------
    def _int_weight(self, t: str) -> bool:
        init = self.inits.get(t)
        return init is not None and init.data_type in _INTEGER and len(init.dims) >= 1

    def _only(self, t: str, op: str) -> int | None:
        users = set(self.consumers.get(t, []))
        if len(users) != 1 or t in self.outputs:
            return None
        j = next(iter(users))
        return j if self.nodes[j].op_type == op and j not in self.drop else None

    def _bias(self, t: str) -> str | None:
        """`t` where it is a constant (an initializer, or a Reshape / Identity of one): the initializer's name."""
        if t in self.inits:
            return t
        j = self.producer.get(t)
        if j is not None and self.nodes[j].op_type in ("Reshape", "Identity", "Unsqueeze") and \
                self.nodes[j].input[0] in self.inits:
            return self.nodes[j].input[0]
        return None

    def _float_input(self, t: str) -> str:
        """The float tensor whose value an (integer) input `t` carries: a DynamicQuantizeLinear's or
        QuantizeLinear's input, a tensor already mapped, else `t`."""
        if t in self.float_of:
            return self.float_of[t]
        j = self.producer.get(t)
        if j is not None and self.nodes[j].op_type in ("DynamicQuantizeLinear", "QuantizeLinear") and \
                self.nodes[j].output[0] == t:
            return self.nodes[j].input[0]
        return t

    def _out(self, t: str, scale: str, zero: str) -> str:
        """The float name of an integer output `t`: a DequantizeLinear reading it (absorbed), else a view."""
        self.qparams[t] = (scale, zero)
        for j in self.consumers.get(t, []):
            n = self.nodes[j]
            if n.op_type == "DequantizeLinear" and j not in self.drop:
                self.drop.add(j)
                self.float_of[t] = n.output[0]
                return n.output[0]
        name = t + VIEW_SUFFIX
        while name in self.names:
            name += "_"
        self.names.add(name)
        self.views[name] = (t, scale, zero)
        self.float_of[t] = name
        return name

    def _weight_root(self, t: str) -> str | None:
        """The initializer `t` is (behind DequantizeLinear, QuantizeLinear, Cast or Identity), else None."""
        for _ in range(4):
            if t in self.inits:
                return t
            j = self.producer.get(t)
            if j is None or self.nodes[j].op_type not in ("DequantizeLinear", "QuantizeLinear", "Cast", "Identity"):
                return None
            t = self.nodes[j].input[0]
        return None

    def _weight_shape_init(self, w: str) -> str:
        """The name of a stand-in constant of initializer `w`'s shape reversed (a transposed weight)."""
        init = self.inits[w]
        name = w + "::T"
        if name not in self.names:
            self.names.add(name)
            self.extra_inits.append(_stand_in(name, init.data_type, list(reversed(init.dims))))
        return name

    # -- the patterns ---------------------------------------------------------------------------------------
    def _dynamic(self, i: int, n: onnx.NodeProto) -> None:
        """(Dynamic)QuantizeLinear → MatMulInteger / ConvInteger(x_q, W_q) → Cast → Mul(scales) [→ Add(bias)]; a
        MatMulInteger of two quantized activations too (optimum's ORTQuantizer quantizes attention's QK^T and ·V)."""
        if len(n.input) < 2:
            return
        w = n.input[1] if self._int_weight(n.input[1]) else self._float_input(n.input[1])
        if w == n.input[1] and not self._int_weight(w):  # neither a quantized weight nor a quantized activation
            return
        cast = self._only(n.output[0], "Cast")
        mul = self._only(self.nodes[cast].output[0], "Mul") if cast is not None else None
        if mul is None:
            return
        x = self._float_input(n.input[0])
        y = self.nodes[mul].output[0]
        absorbed = [i, cast, mul]
        scales = next((t for t in self.nodes[mul].input if t != self.nodes[cast].output[0]), "")
        k = self.producer.get(scales)
        if k is not None and self.nodes[k].op_type == "Mul" and set(self.consumers.get(scales, [])) == {mul}:
            absorbed.append(k)
        inputs = [x, w]
        if n.op_type == "ConvInteger":
            add = self._only(y, "Add")
            other = next((t for t in self.nodes[add].input if t != y), "") if add is not None else ""
            bias = self._bias(other) if other else None
            if bias is not None:
                inputs.append(bias)
                y = self.nodes[add].output[0]
                absorbed.append(add)
                if self.producer.get(other) is not None and set(self.consumers.get(other, [])) == {add}:
                    absorbed.append(self.producer[other])
        op = "MatMul" if n.op_type == "MatMulInteger" else "Conv"
        attrs = [a for a in n.attribute] if op == "Conv" else []
        node = helper.make_node(op, inputs, [y], name=n.name or y)
        node.attribute.extend(attrs)
        self.drop.update(absorbed)
        self.put[max(absorbed)] = [node]
        self.drop.discard(max(absorbed))

    def _fused(self, i: int, n: onnx.NodeProto) -> None:
        """DynamicQuantizeMatMul(A, B, b_scale, b_zp, bias) / MatMulIntegerToFloat(A_q, B, …, bias) → MatMul
        [+ Add(bias), the MatMul's value then a fused op's inner one]."""
        if len(n.input) < 2 or not self._int_weight(n.input[1]):
            return
        x = n.input[0] if n.op_type == "DynamicQuantizeMatMul" else self._float_input(n.input[0])
        bias = n.input[4] if n.op_type == "DynamicQuantizeMatMul" and len(n.input) > 4 else \
            (n.input[6] if n.op_type == "MatMulIntegerToFloat" and len(n.input) > 6 else "")
        y = n.output[0]
        if not bias:
            self.put[i] = [helper.make_node("MatMul", [x, n.input[1]], [y], name=n.name or y)]
            return
        inner = y + "::matmul"
        self.inner.add(inner)
        self.put[i] = [helper.make_node("MatMul", [x, n.input[1]], [inner], name=n.name or y),
                       helper.make_node("Add", [inner, bias], [y], name=(n.name or y) + "::bias")]

    def _gather(self, i: int, n: onnx.NodeProto) -> None:
        """Gather of a quantized initializer → DequantizeLinear: Gather of the weight, the DequantizeLinear's
        output its value; read by QOperator ops instead (QLinearAdd), a view by the scale they read it with."""
        dq = self._only(n.output[0], "DequantizeLinear")
        if dq is not None:
            y = self.nodes[dq].output[0]
            self.float_of[n.output[0]] = y
            self.drop.add(dq)
        else:
            reads = [(j, k) for j in self.consumers.get(n.output[0], []) for k, x in enumerate(self.nodes[j].input)
                     if x == n.output[0] and self.nodes[j].op_type in _QLINEAR and k + 2 < len(self.nodes[j].input)]
            if not reads:
                return
            j, k = reads[0]
            y = self._out(n.output[0], self.nodes[j].input[k + 1], self.nodes[j].input[k + 2])
        self.put[i] = [helper.make_node("Gather", list(n.input), [y], name=n.name or y,
                                        axis=next((a.i for a in n.attribute if a.name == "axis"), 0))]

    def _qlinear(self, i: int, n: onnx.NodeProto) -> None:
        """A QOperator op → its float op over the float values of its inputs; its output's float value the
        DequantizeLinear after it, or a view."""
        if n.op_type == "QLinearConcat":  # Y_scale, Y_zero_point, then (X, scale, zero point) per input
            op, data, (s, z) = "Concat", tuple(range(2, len(n.input), 3)), (0, 1)
        else:
            op, data, (s, z) = _QLINEAR[n.op_type]
        if len(n.input) <= max(s, z):
            return
        inputs = []
        for k in data:
            t = n.input[k] if k < len(n.input) else ""
            if t and (t in self.inits and self._int_weight(t)):
                inputs.append(t)  # a quantized weight or bias: of the float weight's shape
            elif t:
                inputs.append(self._float_input(t))
        y = self._out(n.output[0], n.input[s], n.input[z])
        if op in ("Conv", "Gemm", "MatMul", "Add"):  # a residual's QLinearAdd takes the ReLU after it too
            self.clipped.add(y)
        node = helper.make_node(op, inputs, [y], name=n.name or y)
        if op in _ATTRIBUTED:
            node.attribute.extend(a for a in n.attribute if a.name not in ("channels_last",))
        self.put[i] = [node]
        if op == "Gemm":
            self.nodes[i] = node
            self._gemm(i, node)

    def _ort_fused(self, i: int, n: onnx.NodeProto) -> None:
        """ONNX Runtime's transformer fusions around the quantized MatMuls of an optimized file (ORT's optimizer,
        optimum's ORTOptimizer): SkipLayerNormalization → Add [+ bias] → LayerNormalization, FusedMatMul (a MatMul
        with its transposes and scale folded in) → MatMul, Gelu → its erf form's last two Muls (x · (1 + erf(x/√2))
        · 0.5); the values inside a fusion are no file's tensors (`inner`)."""
        y = n.output[0]
        name = n.name or y
        if n.op_type == "FusedMatMul":
            self.put[i] = [helper.make_node("MatMul", list(n.input[:2]), [y], name=name)]
        elif n.op_type == "Gelu":
            erf, half = y + "::erf", y + "::half"
            self.inner.update({erf, y + "::x_erf"})
            self.extra_inits.append(_stand_in(half, onnx.TensorProto.FLOAT, []))
            self.put[i] = [helper.make_node("Mul", [n.input[0], erf], [y + "::x_erf"], name=name + "::mul"),
                           helper.make_node("Mul", [y + "::x_erf", half], [y], name=name)]
        elif len(n.input) >= 3:
            total = n.output[3] if len(n.output) > 3 and n.output[3] else y + "::sum"
            if total == y + "::sum":
                self.inner.add(total)
            x, nodes = n.input[0], []
            if len(n.input) > 4 and n.input[4]:  # a bias added before the skip
                nodes.append(helper.make_node("Add", [x, n.input[4]], [y + "::biased"], name=name + "::bias"))
                x = y + "::biased"
                self.inner.add(x)
            nodes.append(helper.make_node("Add", [x, n.input[1]], [total], name=name + "::skip"))
            ln = "LayerNormalization" if n.op_type == "SkipLayerNormalization" else "SimplifiedLayerNormalization"
            inputs = [total, n.input[2]] + ([n.input[3]] if len(n.input) > 3 and n.input[3] and ln ==
                                             "LayerNormalization" else [])
            norm = helper.make_node(ln, inputs, [y], name=name)
            norm.attribute.extend(a for a in n.attribute if a.name == "epsilon")
            self.put[i] = nodes + [norm]

    def _passing(self, i: int, n: onnx.NodeProto) -> None:
        """An op moving an integer tensor's values (MaxPool, Reshape, …): the same op over its float value."""
        scale, zero = self.qparams[n.input[0]]
        y = self._out(n.output[0], scale, zero)
        node = onnx.NodeProto()
        node.CopyFrom(n)
        node.input[0] = self.float_of[n.input[0]]
        del node.output[:]
        node.output.extend([y] + list(n.output[1:]))
        self.put[i] = [node]

    def _gemm(self, i: int, n: onnx.NodeProto) -> None:
        """Gemm(A, W[, C]) with a constant W, no transA, alpha = beta = 1 → MatMul(A, W(ᵀ)) [+ Add(C)]."""
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        root = self._weight_root(n.input[1]) if len(n.input) > 1 else None
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or root is None:
            return
        # transposed: a stand-in of the reversed shape; else the weight itself (behind its DequantizeLinear still
        # that weight: `foreign._Graph` reads its shape)
        w = self._weight_shape_init(root) if attrs.get("transB", 0) else n.input[1]
        y = n.output[0]
        if len(n.input) < 3 or not n.input[2]:
            self.put[i] = [helper.make_node("MatMul", [n.input[0], w], [y], name=n.name or y)]
            return
        inner = y + "::matmul"
        self.inner.add(inner)
        self.put[i] = [helper.make_node("MatMul", [n.input[0], w], [inner], name=n.name or y),
                       helper.make_node("Add", [inner, n.input[2]], [y], name=(n.name or y) + "::bias")]


def _shell(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` without its nodes and initializers' data: the initializers keep name, type and dims only (a small one,
    a Slice's bounds or an axis, its values too: `constant_values.py` tells alike nodes apart by them)."""
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    g = out.graph
    g.name = model.graph.name
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    for init in model.graph.initializer:
        small = math.prod(init.dims) <= SMALL and init.data_location != onnx.TensorProto.EXTERNAL
        g.initializer.append(init if small else _stand_in(init.name, init.data_type, init.dims))
    return out


def _stand_in(name: str, data_type: int, dims) -> onnx.TensorProto:
    """An initializer of `dims` without its values: what the alignment reads of a weight."""
    t = onnx.TensorProto()
    t.name, t.data_type = name, data_type
    t.dims.extend(dims)
    return t

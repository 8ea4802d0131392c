"""The nodes of a deployed graph and of the reference's export that have no counterpart on the other side.

`node_pairs.align_nodes` pairs the two graphs node by node; what is left over on either side is a graph difference: a
Clip or a Mul the deployment inserted, a Sigmoid it dropped, an op it fused or split. Each unpaired node is placed
between the probes around it on its own side (the nearest probe tensor upstream and downstream), so a report can
say which segment holds it, and bisect can name it where that segment is the one the divergence arises in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from cp_debug.graph.plan import tensor_types
from cp_debug.probes.naming import ProbeMap

CANDIDATE, REFERENCE = "candidate", "reference"
# Nodes a precision conversion adds or swaps in (FP16 casts, INT8 Q/DQ and integer ops): counted apart, never blamed.
PRECISION_OPS = frozenset({"Cast", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "ConvInteger", "MatMulInteger"})


@dataclass(frozen=True)
class UnmatchedNode:
    """A node of one side's graph (`side`: "candidate" = the deployed file, "reference" = cp_debug's export) with no
    counterpart on the other, between the probes `before` and `after` (None: the graph's edge)."""

    node: str
    op_type: str
    side: str
    stage: str
    before: str | None
    after: str | None
    # its tensors on its own side, for the segment checks of a verdict (not saved: a run's detail)
    outputs: tuple[str, ...] = field(default=(), compare=False)
    # False: it writes no floating value computed from the graph's inputs — a weight's form (TorchScript's Identity
    # of a shared initializer, a Transpose of a weight) or shape and index arithmetic (Shape, Gather, Range, Equal …),
    # which exporters each write their own way
    computes: bool = True
    module: str | None = field(default=None, compare=False)  # the innermost module scope it was made in, if known
    eps: float | None = field(default=None, compare=False)  # a normalisation's epsilon (`NORM_EPS`), else None

    @property
    def precision(self) -> bool:
        """A cast or quantization node: the file's precision, not a change of the computation."""
        return self.op_type in PRECISION_OPS

    @property
    def form(self) -> bool:
        """Not a change of the computation: the file's precision, or an exporter's way of writing weights and
        shapes (`computes` False)."""
        return self.precision or not self.computes

    @property
    def where(self) -> str:
        return "only in the deployed graph" if self.side == CANDIDATE else "only in the reference"

    def describe(self) -> str:
        """E.g. `Clip 'n57' (between pts_backbone.blocks.1.5 and pts_backbone.blocks.1.7)`."""
        eps = f"epsilon {self.eps:.3g}, " if self.eps is not None else ""
        return f"{self.op_type} {self.node!r} ({eps}between {self.before or 'the input'} and " \
               f"{self.after or 'the output'})"

    def to_json(self) -> dict:
        out = {"node": self.node, "op_type": self.op_type, "stage": self.stage, "between": [self.before, self.after]}
        if not self.computes:
            out["computes"] = False
        return out

    @classmethod
    def from_json(cls, d: dict, side: str) -> "UnmatchedNode":
        before, after = (list(d.get("between") or []) + [None, None])[:2]
        return cls(d["node"], d["op_type"], side, d.get("stage") or "", before, after,
                   computes=d.get("computes", True))


@dataclass(frozen=True)
class GraphDifferences:
    """Per side, the nodes with no counterpart on the other (in graph order, stage after stage)."""

    only_in_candidate: tuple[UnmatchedNode, ...] = ()
    only_in_reference: tuple[UnmatchedNode, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.only_in_candidate or self.only_in_reference)

    def __add__(self, other: "GraphDifferences") -> "GraphDifferences":
        return GraphDifferences(self.only_in_candidate + other.only_in_candidate,
                                self.only_in_reference + other.only_in_reference)

    @property
    def computation(self) -> tuple[UnmatchedNode, ...]:
        """The differences that change the computation (precision casts and Q/DQ, weights' and shapes' forms aside),
        candidate's first."""
        return tuple(n for n in self.only_in_candidate + self.only_in_reference if not n.form)

    def summary(self, limit: int = 3) -> str:
        """One line: how many nodes differ on each side, the first few named; precision nodes and the exporters'
        forms of weights and shapes only counted."""
        parts = []
        for what, nodes in (("only in the deployed graph", self.only_in_candidate),
                            ("only in the reference", self.only_in_reference)):
            named = [n for n in nodes if not n.form]
            if named:
                listed = ", ".join(n.describe() for n in named[:limit]) + (" …" if len(named) > limit else "")
                parts.append(f"{len(named)} node{'s' if len(named) > 1 else ''} {what}: {listed}")
            for label, mine in (("the files' precision", [n for n in nodes if n.precision]),
                                ("weights' and shapes' forms", [n for n in nodes if not n.precision and n.form])):
                ops: dict[str, int] = {}
                for n in mine:
                    ops[n.op_type] = ops.get(n.op_type, 0) + 1
                if ops:
                    counts = ", ".join(f"{k} {op}" for op, k in ops.items())
                    parts.append(f"{counts} {what} ({label}, not compared as a change)")
        return "; ".join(parts) if parts else "every node has its counterpart"

    def to_json(self) -> dict:
        return {"only_in_candidate": [n.to_json() for n in self.only_in_candidate],
                "only_in_reference": [n.to_json() for n in self.only_in_reference]}

    @classmethod
    def from_json(cls, d: dict) -> "GraphDifferences":
        return cls(tuple(UnmatchedNode.from_json(n, CANDIDATE) for n in d.get("only_in_candidate") or ()),
                   tuple(UnmatchedNode.from_json(n, REFERENCE) for n in d.get("only_in_reference") or ()))


def without_twins(candidate: tuple[UnmatchedNode, ...], reference: tuple[UnmatchedNode, ...],
                  fused: tuple[onnx.ModelProto, onnx.ModelProto] | None = None) -> GraphDifferences:
    """The differences left once each unpaired node is matched with one of the same op type between the same probes
    on the other side (in graph order): the two graphs compute the same there, and the pairing only lost its way
    (a GELU written as Erf and four arithmetic ops by TorchScript and otherwise by the dynamo exporter leaves the
    Mul, MatMul and Add after it unreached on both sides). `fused`: the (reference, candidate) graphs as written,
    whose fused ops make the other side's unfused form of the same function one computation (`_fused_forms`)."""
    def key(n: UnmatchedNode) -> tuple:
        return n.op_type, n.before, n.after, eps_key(n.eps)

    free: dict[tuple, list[int]] = {}
    for k, n in enumerate(reference):
        if not n.form:
            free.setdefault(key(n), []).append(k)
    matched: set[int] = set()
    kept = []
    for n in candidate:
        twins = free.get(key(n)) if not n.form else None
        if twins:
            matched.add(twins.pop(0))
        else:
            kept.append(n)
    left = [n for k, n in enumerate(reference) if k not in matched]
    kept, left = _fused_forms(kept, left, fused)
    # a module both files name whose own nodes differ on both sides: its implementation written otherwise (SDPA's
    # reshapes, a GELU's ops), which the module's own probe judges; a node only one side adds stays a difference
    # (or, on one side, only moves its values about: a Reshape / Transpose of its own the other exporter fused away)
    both = ({n.module for n in kept if not n.form} & {n.module for n in left if not n.form}) - {None}
    other = _other_norms(kept, left)

    def rewrite(n: UnmatchedNode) -> bool:
        return id(n) not in other and (n.module in both or (n.module is not None and n.op_type in _MOVES))

    return GraphDifferences(tuple(n for n in kept if n.form or not rewrite(n)),
                            tuple(n for n in left if n.form or not rewrite(n)))


# One function, fused and unfused (issue 117 item 4: a user's INT8 file with GELU as one `Gelu` op was reported as a
# graph difference against the reference's Div/Erf/Add/Mul): the fused op -> (the ops its unfused form is written
# with, the ops one of which that form must hold). A fused op on one side and unpaired nodes between the same probes
# on the other, all of its form's ops and one of its signature among them, are one computation.
_ARITH = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Neg", "Cast", "Identity"})
_GELU = (_ARITH | {"Erf", "Tanh"}, frozenset({"Erf", "Tanh"}))
_NORM = (_ARITH | {"ReduceMean", "ReduceSumSquare", "ReduceSum"}, frozenset({"ReduceMean", "ReduceSumSquare"}))
_SOFTMAX = (_ARITH | {"Exp", "ReduceMax", "ReduceSum"}, frozenset({"Exp"}))
_SIGMOID_GATE = (_ARITH | {"Sigmoid"}, frozenset({"Sigmoid"}))
_CLIPS = frozenset({"HardSigmoid", "Clip", "Relu", "Min", "Max"})
_HARD = (_ARITH | _CLIPS, _CLIPS)
# a mixture of experts written out (transformers' experts one by one: routing, gathers of the chosen tokens, each
# expert's matmuls, their weighted sum) against ONNX Runtime's fused MoE / QMoE (GPT-OSS, s13)
_MOE = (_ARITH | _CLIPS | {"MatMul", "Einsum", "Gather", "GatherElements", "GatherND", "ScatterND",
                           "ScatterElements", "TopK", "Softmax", "Sigmoid", "Reshape", "Transpose", "Slice", "Concat",
                           "Split", "Squeeze", "Unsqueeze", "NonZero", "Where", "OneHot", "Expand", "Shape",
                           "ReduceSum", "Equal", "Greater", "Less", "Range", "Tile", "ConstantOfShape", "Tanh", "Exp"},
        frozenset({"TopK", "OneHot", "NonZero"}))  # routing's ops: a group of matmuls alone is no MoE
FUSED_FORMS = {
    "Gelu": _GELU, "FastGelu": _GELU, "BiasGelu": _GELU, "QuickGelu": _SIGMOID_GATE,
    "LayerNormalization": _NORM, "SkipLayerNormalization": _NORM, "SimplifiedLayerNormalization": _NORM,
    "SkipSimplifiedLayerNormalization": _NORM, "RMSNormalization": _NORM,
    "GatedRMSNorm": (_NORM[0] | {"Sigmoid"}, _NORM[1]),  # ONNX Runtime's RMSNorm(x) · silu(gate): Qwen3.5's
    "Softmax": _SOFTMAX, "LogSoftmax": (_SOFTMAX[0] | {"Log"}, frozenset({"Exp", "Log"})),
    "Swish": _SIGMOID_GATE, "SiLU": _SIGMOID_GATE, "HardSwish": _HARD, "HardSigmoid": _HARD,
    "Mish": (_ARITH | {"Softplus", "Tanh", "Exp", "Log"}, frozenset({"Softplus", "Tanh"})),
    "Softplus": (_ARITH | {"Exp", "Log"}, frozenset({"Log"})),
    "Gemm": (_ARITH | {"MatMul", "Transpose"}, frozenset({"MatMul"})),
    "MoE": _MOE, "QMoE": _MOE,
}


def _fused_forms(candidate: list[UnmatchedNode], reference: list[UnmatchedNode],
                 fused: tuple[onnx.ModelProto, onnx.ModelProto] | None = None
                 ) -> tuple[list[UnmatchedNode], list[UnmatchedNode]]:
    """Both sides without each fused op (`FUSED_FORMS`) and the other side's unpaired nodes that write it unfused
    between the same probes (its `before` and `after`, or its module): one computation, two forms. Where the pairing
    took the fused op's own part already (an ORT `Gelu` read as its erf form's last two Muls, `quantized_forms`),
    the other side's nodes left between two probes, all of a form whose fused op the other graph holds (`fused`: the
    reference and the candidate as written) and one of its signature among them, are its rest."""
    gone: set[int] = set()

    def match(fused: list[UnmatchedNode], other: list[UnmatchedNode]) -> None:
        for f in fused:
            form = FUSED_FORMS.get(f.op_type)
            if form is None or f.form or id(f) in gone:
                continue
            ops, signature = form
            group = [n for n in other if id(n) not in gone and not n.form and n.op_type in ops
                     and ((n.before, n.after) == (f.before, f.after)
                          or (f.module is not None and n.module == f.module))]
            if any(n.op_type in signature for n in group):
                gone.update(id(n) for n in (f, *group))

    match(candidate, reference)
    match(reference, candidate)
    for nodes, other in ((reference, fused[1] if fused else None), (candidate, fused[0] if fused else None)):
        for op in sorted({n.op_type for n in other.graph.node} & set(FUSED_FORMS)) if other is not None else ():
            ops, signature = FUSED_FORMS[op]
            groups: dict[tuple, list[UnmatchedNode]] = {}
            for n in nodes:
                if id(n) not in gone and not n.form and n.op_type in ops:
                    groups.setdefault((n.before, n.after), []).append(n)
            for group in groups.values():
                if any(n.op_type in signature for n in group):
                    gone.update(id(n) for n in group)
    return [n for n in candidate if id(n) not in gone], [n for n in reference if id(n) not in gone]


# a fused normalisation that removes the mean, and one that does not (RMS): in one module on both sides, two functions
# (the builder writes OLMo's LayerNorm as SimplifiedLayerNormalization), not one module's implementation
MEAN_NORMS = frozenset({"LayerNormalization", "SkipLayerNormalization"})
RMS_NORMS = frozenset({"SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "RMSNormalization"})


def _other_norms(candidate: list[UnmatchedNode], reference: list[UnmatchedNode]) -> set[int]:
    """The unpaired fused norms (ids) of a module whose other side holds another norm (`MEAN_NORMS` / `RMS_NORMS`,
    or another epsilon): they stay differences, so that the segment where the divergence arises names them."""
    kinds: dict[tuple[str, str], list[UnmatchedNode]] = {}
    for n in (*candidate, *reference):
        if n.op_type in MEAN_NORMS | RMS_NORMS and n.module is not None:
            kinds.setdefault((n.module, n.side), []).append(n)
    out: set[int] = set()
    for (module, side), nodes in kinds.items():
        other = kinds.get((module, REFERENCE if side == CANDIDATE else CANDIDATE), [])
        if any(_norm_key(n) != _norm_key(m) for n in nodes for m in other):
            out.update(id(n) for n in nodes)
    return out


def _norm_key(n: UnmatchedNode) -> tuple:
    return n.op_type in MEAN_NORMS, eps_key(n.eps)


def norm_eps(node: onnx.NodeProto) -> float | None:
    """A normalisation node's epsilon (ONNX's and ONNX Runtime's default 1e-5 where it holds none), else None."""
    if node.op_type not in MEAN_NORMS | RMS_NORMS:
        return None
    return next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)


def eps_key(eps: float | None) -> float | None:
    """An epsilon as compared: two graphs' float32 / float64 writings of one value alike (3 digits)."""
    return None if eps is None else float(f"{eps:.3g}")


def norm_kind(node: onnx.NodeProto) -> tuple[bool, float | None]:
    """A normalisation node as compared with another: (removes the mean, its epsilon's `eps_key`)."""
    return node.op_type in MEAN_NORMS, eps_key(norm_eps(node))


def norms_alike(a: onnx.ModelProto, b: onnx.ModelProto, pairs: dict[int, int]) -> dict[int, int]:
    """`pairs` (node indices of `a` → `b`) without two normalisations of other epsilons (the builder writes 1e-6
    where Nemotron's config says 1e-5): each is left a graph difference of its side."""
    na, nb = a.graph.node, b.graph.node
    return {i: j for i, j in pairs.items() if eps_key(norm_eps(na[i])) == eps_key(norm_eps(nb[j]))
            or norm_eps(na[i]) is None or norm_eps(nb[j]) is None}


# ops that only move a tensor's values about: inside a module, its implementation's layout, never new arithmetic
_MOVES = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Identity"})


def unmatched_nodes(model: onnx.ModelProto, nodes: list[int], probe_map: ProbeMap, side: str,
                    stage: str, scopes: list[tuple[str, ...]] | None = None,
                    types=None) -> tuple[UnmatchedNode, ...]:
    """The nodes `nodes` (indices into `model`'s graph) placed between the probes of `probe_map` around them;
    `scopes`: every node's module chain (`naming.node_scopes`), which names each one's module; `types(model)`: a
    graph's tensor types where the caller infers them once (else `graph.plan.tensor_types`)."""
    graph = model.graph
    producer = {t: i for i, n in enumerate(graph.node) for t in n.output if t}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(graph.node):
        for t in n.input:
            consumers.setdefault(t, []).append(i)
    names = _probe_names(model, probe_map)

    def upstream(t: str) -> list[str]:
        return list(graph.node[producer[t]].input) if t in producer else []

    def downstream(t: str) -> list[str]:
        return [x for j in consumers.get(t, ()) for x in graph.node[j].output]

    out = []
    values = _activation_values(model, (types or tensor_types)(model)) if nodes else frozenset()
    for i in nodes:
        node = graph.node[i]
        before = _nearest(list(node.input), names, upstream, lambda t: producer.get(t, -1), max)
        after = _nearest(list(node.output), names, downstream, lambda t: producer.get(t, len(graph.node)), min)
        outputs = tuple(t for t in node.output if t)
        name = node.name or f"{node.op_type} → {outputs[0] if outputs else '?'}"  # some exporters leave nodes unnamed
        module = scopes[i][-1] if scopes and scopes[i] else None
        out.append(UnmatchedNode(name, node.op_type, side, stage, before, after, outputs,
                                 computes=bool(values & set(outputs)), module=module, eps=norm_eps(node)))
    return tuple(out)


def _activation_values(model: onnx.ModelProto, types: dict[str, onnx.TypeProto]) -> frozenset[str]:
    """The floating tensors computed from the graph's floating inputs or the weights its token ids select (not from
    weights, constants, ids or masks alone): the values a graph difference can change. A tensor `types` does not
    type counts as floating."""
    graph = model.graph
    init = {t.name for t in graph.initializer}
    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    # values flow from the floating inputs and from the weights token ids select (an embedding's Gather); what ids and
    # masks compute otherwise (an attention mask's 1 - mask, its fill) each exporter writes its own way
    inputs = [t for t in graph.input if t.name not in init]
    live = {t.name for t in inputs if t.type.tensor_type.elem_type in floating}
    ids = {t.name for t in inputs} - live
    weights = init | {n.output[0] for n in graph.node if n.op_type == "Constant" and n.output}
    out = set()
    for node in graph.node:  # graph order is topological (ONNX's rule)
        if node.op_type in ("Shape", "Size"):
            continue  # a shape is no value: positions read from it are constants of the input's size
        if not any(t in live for t in node.input if t):
            selects = node.op_type == "Gather" and node.input[0] in weights and node.input[1] in ids
            if not selects:
                ids.update(t for t in node.output if t and any(x in ids for x in node.input))
                continue
        for t in node.output:
            if t:
                live.add(t)
                ty = types.get(t)
                if ty is None or ty.tensor_type.elem_type in floating:
                    out.add(t)
    return frozenset(out)


def _probe_names(model: onnx.ModelProto, probe_map: ProbeMap) -> dict[str, str]:
    """Tensor → the probe it is compared as: the deepest module mapped onto it, else the graph's input or output."""
    names = {t.name: t.name for t in list(model.graph.input) + list(model.graph.output)}
    init = {t.name for t in model.graph.initializer}
    names = {t: n for t, n in names.items() if t not in init}
    best: dict[str, str] = {}
    for module, t in probe_map.tensors.items():
        if t not in best or module.count(".") > best[t].count("."):
            best[t] = module
    names.update(best)
    return names


def _nearest(start: list[str], names: dict[str, str], step, order, pick) -> str | None:
    """Walk from the tensors `start` (`step`: a tensor's next tensors), stopping at probe tensors; the probe whose
    producer comes last (`pick=max`, upstream) or first (`pick=min`, downstream) in graph order."""
    seen: set[str] = set()
    found: list[str] = []
    todo = [t for t in start if t]
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in names:
            found.append(t)
            continue
        todo.extend(x for x in step(t) if x)
    return names[pick(found, key=order)] if found else None

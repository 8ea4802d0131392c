"""The one name table: PyTorch module qualified name ↔ ONNX tensor, built from the exporter's own scopes.

Both exporters record which module each ONNX node came from:
- the TorchScript exporter names nodes `/head/shared/conv/Conv`, one scope component per module level
  (`body.0` for the first child of Sequential `body`, attribute names otherwise);
- the torch.export-based exporter stores `pkg.torch.onnx.name_scopes` metadata with qualified names.
A module's tensor is the output of its scope's nodes that leaves the scope (or is a graph output), checked
against the shape the module really produced — axis by axis at a second input size where the graph's axes are
dynamic (`sized_shapes.py`): an exporter that cancels a module's closing transpose against the next module's
opening one leaves the module's values in its ONNX tensor in another axis order, and such a module is left
unmapped (same name ≠ same layout). Exporters fold BatchNorm into the preceding conv: the BN module
then owns no node, and the conv's ONNX output carries the *BN's* value — so the BN maps to that tensor and
the conv is left unmapped (same name ≠ same value).
"""

from __future__ import annotations

import ast
from functools import partial
from dataclasses import dataclass, field, replace
from typing import Callable

import onnx

from cp_debug.graph.model import static_dims
from cp_debug.probes.chained_calls import chained_calls, chained_in_trace, connected
from cp_debug.probes.probe_dtypes import dtype_fits, graph_types
from cp_debug.probes.rnn_slots import rnn_slot
from cp_debug.probes.sized_shapes import SizedShapes, other_order, permuted
from cp_debug.probes.unread import never_read
from cp_debug.probes.torch_trace import ModuleTrace

_BN_TYPES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm")


@dataclass(frozen=True)
class ProbeMap:
    tensors: dict[str, str]  # module qualified name -> ONNX tensor
    op_types: dict[str, str]  # module -> op type of the node producing its tensor
    unmapped: dict[str, str] = field(default_factory=dict)  # module -> why it has no ONNX tensor
    node_index: dict[str, int] = field(default_factory=dict)  # ONNX tensor -> index of its producing node
    typed: frozenset[str] = frozenset()  # tuple members a same-shape member's tensor was told from by type alone
    inside: dict[str, str] = field(default_factory=dict)  # unmapped module -> the fused op computing it (a file's)

    def tensor(self, module: str) -> str | None:
        return self.tensors.get(module)

    def segment_ends(self, held, apart=()) -> "ProbeMap":
        """The map without its members told apart by type alone (`typed`) that `held` (the other graph's probes)
        lacks, nor the probes `apart` (found by the op computing them beside a fused op, `inside_fused`): a graph
        difference's segment ends at a probe both graphs hold as such (the builder's fused MoE holds the router's
        weights and chosen experts inside it, and the routing written out is one computation with it)."""
        gone = (self.typed - set(held)) | set(apart)
        return replace(self, tensors={q: t for q, t in self.tensors.items() if q not in gone}) if gone else self


def node_scopes(model: onnx.ModelProto, module_names: set[str],
                rename: ScopeRename | None = None) -> list[tuple[str, ...]]:
    """For every node, the chain of module qualified names it was created in (outermost first).

    `rename` reads a graph exported from another module tree that holds the same network (autoware-ml's export
    wrappers: `backbone.blocks.0.0.conv` for our `pts_backbone.blocks.0.0`): it gives our name for one of that
    tree's modules, None for a module with no counterpart (left out of the chain), or the name unchanged where it
    does not know it."""
    known = _Indexed(module_names if rename is None else _Known(module_names, rename))
    out = []
    for node in model.graph.node:
        chain = _scopes_from_metadata(node)
        if chain is None:
            chain = _scopes_from_name(node.name, known)
        if rename is not None:
            chain = _renamed(chain, module_names, rename)
        out.append(tuple(chain))
    return out


ScopeRename = Callable[[str], "str | None"]


class _Known:
    """Module names a scope walk accepts: ours, and the other tree's that `rename` recognises."""

    def __init__(self, names: set[str], rename: ScopeRename):
        self.names, self.rename = names, rename

    def __contains__(self, q: str) -> bool:
        return q in self.names or self.rename(q) != q

    def __iter__(self):  # our own names (a ModuleDict member's lookup walks them)
        return iter(self.names)


class _Indexed:
    """Module names a scope walk asks, indexed once by (parent, last component) for `_container_member` (each of a
    0.5 B builder file's 1565 nodes scanned every name: 0.6 s of a bisect)."""

    def __init__(self, names: "set[str] | _Known"):
        self.names, self.by_tail = names, {}
        for n in names:
            parts = n.split(".")
            if len(parts) > 1:
                self.by_tail.setdefault((".".join(parts[:-2]), parts[-1]), []).append(n)

    def __contains__(self, q: str) -> bool:
        return q in self.names

    def __iter__(self):
        return iter(self.names)


def _renamed(chain: list[str], names: set[str], rename: ScopeRename) -> list[str]:
    out: list[str] = []
    for q in chain:
        ours = q if q in names else rename(q)
        if ours is not None and ours in names and (not out or out[-1] != ours):
            out.append(ours)
    return out


def _scopes_from_metadata(node) -> list[str] | None:
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                return None
            # ['', 'body', 'body.0', ..., '<fx node name>']: the last entry is the op, the first the root.
            return [s for s in scopes[1:-1] if s]
    return None


def node_scope(node, module_names: set[str]) -> str | None:
    """The innermost module a node was created in: the dynamo exporter's scope metadata, else the TorchScript
    exporter's node name read against `module_names`; None where neither says."""
    chain = _scopes_from_metadata(node)
    if chain is None:
        chain = _scopes_from_name(node.name, module_names)
    return chain[-1] if chain else None


def _container_member(parent_q: str, comp: str, module_names: "set[str] | _Known | _Indexed") -> str | None:
    """`parent_q.<container>.comp`, where exactly one module name has that form: the TorchScript exporter names a
    ModuleDict's member by its key alone (`/reg/reg.0/Conv` for `heads.reg.0`), leaving out the dict, which never
    runs itself."""
    head = f"{parent_q}." if parent_q else ""
    depth = head.count(".") + 1  # indexed: parent_q.<one component>.comp read off at once
    found = module_names.by_tail.get((parent_q, comp), []) if isinstance(module_names, _Indexed) and "." not in comp \
        else [n for n in module_names if n.startswith(head) and n.endswith(f".{comp}") and n.count(".") == depth]
    return found[0] if len(found) == 1 else None


def _scopes_from_name(name: str, module_names: "set[str] | _Known") -> list[str]:
    return [q for q, _ in _walk_name(name, module_names)]


def _walk_name(name: str, module_names: "set[str] | _Known") -> list[tuple[str, str]]:
    """(module, the node name's scope prefix up to it) for each scope component of a TorchScript node name. A
    module's second call is scoped `relu_1` (its third `relu_2`): the suffix is read off and the prefix tells
    the calls apart."""
    parts = name.split("/")
    if len(parts) < 3 or parts[0] != "":
        return []
    chain: list[tuple[str, str]] = []
    parent_q, parent_c = "", ""
    for j, comp in enumerate(parts[1:-1], start=1):
        q = _resolve(parent_q, parent_c, comp, module_names)
        if q is None:
            base, _, n = comp.rpartition("_")
            if base and n.isdigit():
                q = _resolve(parent_q, parent_c, base, module_names)
                comp = base if q is not None else comp
        if q is None:
            break
        chain.append((q, "/".join(parts[:j + 1])))
        parent_q, parent_c = q, comp
    return chain


def _resolve(parent_q: str, parent_c: str, comp: str, module_names: "set[str] | _Known") -> str | None:
    options = []
    if parent_c and comp.startswith(parent_c + "."):
        options.append(parent_q + comp[len(parent_c):])
    options.append(f"{parent_q}.{comp}" if parent_q else comp)
    options.append(comp)
    q = next((o for o in options if o in module_names), None)
    return q if q is not None else _container_member(parent_q, comp, module_names)


# nodes whose outputs are no module's value: constants, and the integer form a quantizer writes of a tensor
# (ONNX Runtime's quantize_dynamic names `…/LayerNorm/LayerNormalization_output_0_QuantizeLinear` into the scope of
# the module whose output it quantizes; its DequantizeLinear, where there is one, stays: that is the value)
_NOT_A_VALUE = frozenset({"Constant", "QuantizeLinear", "DynamicQuantizeLinear"})
# ONNX Runtime's fused residual-add + norm: output 0 is the norm's value, output 3 the residual sum it was fed (the
# previous block's output, ONNX Runtime GenAI's builder names it in the norm's scope)
_SKIP_NORMS = frozenset({"SkipLayerNormalization", "SkipSimplifiedLayerNormalization"})


def map_modules_to_onnx(model: onnx.ModelProto, trace: ModuleTrace, rename: ScopeRename | None = None,
                        sized: SizedShapes | None = None, types: dict | None = None) -> ProbeMap:
    """Build the probe → tensor table for every probe in `trace` (`rename`: see `node_scopes`). `sized`: both
    sides' shapes at a size that tells axis orders apart, checked where the graph's static shape leaves axes open.
    `types`: the graph's tensor types where the caller has them (`static_shapes`).

    A module's nodes are those carrying its scope. A module called k > 1 times has its nodes split into its calls
    (TorchScript names each call's scope apart, `relu` / `relu_1`; otherwise each call is a connected group of the
    module's nodes) and the i-th call's probes map into the i-th group in graph order; where the groups do not
    number k, no call is mapped (never one call's probe onto another call's tensor). A call's probes are the
    tensors leaving its nodes, matched by shape: one tensor out, the last one that fits; several (a tuple), each
    to the one tensor that fits it, left out where two could. A probe's element type must fit too (`probe_dtypes`:
    a float output never onto an int64 tensor), which tells a tuple's same-shape members of other types apart."""
    graph = model.graph
    names = set(trace.call_counts) | {trace.scope_of(p)[0] for p in trace.order}
    scopes = node_scopes(model, names, rename)
    types = graph_types(model, types)
    shapes = static_shapes(model, types)
    elems = {name: ty.tensor_type.elem_type for name, ty in types.items()}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for t in node.input:
            consumers.setdefault(t, []).append(i)
    graph_outputs = {o.name for o in graph.output}
    node_index = {t: i for i, node in enumerate(graph.node) for t in node.output}
    producer = {t: (i, k) for i, node in enumerate(graph.node) for k, t in enumerate(node.output) if t}

    members: dict[str, list[int]] = {}
    for i, chain in enumerate(scopes):
        for q in chain:
            members.setdefault(q, []).append(i)

    tensors: dict[str, str] = {}
    op_types: dict[str, str] = {}
    unmapped: dict[str, str] = {}
    typed: set[str] = set()
    by_call: dict[str, list[str]] = {}
    for p in trace.order:
        by_call.setdefault(trace.call_of(p), []).append(p)
    groups: dict[str, list[list[int]] | str] = {}  # module -> its calls' nodes, or why they cannot be told apart
    sums = _residual_sums(graph, scopes, producer, consumers, graph_outputs)
    for probes in by_call.values():
        scope, call = trace.scope_of(probes[0])  # a shared module's call: by the name it was reached through
        # a quantizer's node named in the module's scope writes its integer form, never its value: outside it
        idx: list[int] | str = [i for i in members.get(scope, []) if graph.node[i].op_type not in _NOT_A_VALUE]
        n_calls = trace.call_counts.get(scope, 1)
        if not idx:
            idx = "no ONNX node carries this module's scope (folded or optimised away by the exporter)"
        elif n_calls > 1:
            if scope not in groups:
                groups[scope] = _calls_apart(graph, idx, n_calls, scope, names, rename is None, trace)
            split = groups[scope]
            idx = split if isinstance(split, str) else split[call - 1]
        if isinstance(idx, str):
            unmapped.update((p, idx) for p in probes)
            continue
        leaving = _leaving(graph, idx, graph_outputs, consumers) + sums.get(scope, [])
        handed = trace.handed_up.get(trace.call_of(probes[0]), ())  # members another call made: its tensors
        leaving = [(i, t) for i, t in leaving if t not in {tensors.get(q) for q in handed}]
        blind = {(trace.shapes.get(q), trace.dtypes.get(q)) for q in handed if q not in tensors}
        for p in [p for p in probes if trace.site(p).path and (trace.shapes.get(p), trace.dtypes.get(p)) in blind]:
            probes = [q for q in probes if q != p]
            unmapped[p] = (f"a member of its output with the same shape {list(trace.shapes[p])} is another module's "
                           "output, not mapped here: which tensor holds this one is not known, so none is compared")
        slot_of = partial(rnn_slot, graph, producer)
        for p, found in _match_outputs(trace, probes, leaving, shapes, sized, slot_of, elems, typed).items():
            if isinstance(found, str):
                unmapped[p] = found if not found.startswith("no tensor leaving") else \
                    never_read(graph, idx, consumers, graph_outputs, shapes, trace.shapes.get(p)) or found
            else:
                tensors[p] = found[1]
                op_types[p] = graph.node[found[0]].op_type

    _move_folded_batchnorms(trace, tensors, op_types, unmapped)
    return ProbeMap(tensors, op_types, unmapped, {t: node_index.get(t, -1) for t in tensors.values()},
                    frozenset(typed & set(tensors)))


def _match_outputs(trace: ModuleTrace, probes: list[str], leaving: list[tuple[int, str]],
                   shapes: dict[str, tuple | None], sized: SizedShapes | None,
                   slot_of=None, elems: dict[str, int] | None = None,
                   typed: set[str] | None = None) -> dict[str, tuple[int, str] | str]:
    """Each of one call's probes to (node index, tensor) among the tensors `leaving` its nodes, or why not. Where
    several fit a tuple's member, `slot_of(node index, tensor)` (the recurrent op's output slot the tensor is
    computed from: LSTM/GRU/RNN's Y, Y_h, Y_c, which torch returns as (output, (h_n, c_n)) in that order) tells
    them apart. `elems`: each tensor's ONNX element type, which the probe's own must fit (`probe_dtypes`); `typed`
    gets the members so told from a same-shape member."""
    out: dict[str, tuple[int, str] | str] = {}
    taken: set[str] = set()
    for k, p in enumerate(probes):
        want = trace.shapes.get(p)
        if want is None:
            out[p] = "module output is not a tensor"
            continue
        alike = [(i, t) for i, t in leaving if _shape_fits(shapes.get(t), want)]
        if sized is not None:
            alike = [(i, t) for i, t in alike if _sized_fits(sized, p, t, shapes.get(t))]
        shaped, dtype = [(i, t) for i, t in alike if t not in taken], trace.dtypes.get(p)
        fitting = [(i, t) for i, t in shaped if dtype_fits((elems or {}).get(t), dtype)]
        if len(probes) > 1 and len(alike) > 1 == len(fitting) and typed is not None:
            typed.add(p)  # told from a same-shape member by its type alone
        if shaped and not fitting:
            out[p] = f"no tensor leaving the module's ONNX scope has its output shape {list(want)} and type {dtype}"
        elif not fitting:
            others = [t for _, t in sorted(leaving) if sized is not None and permuted(sized, p, t)]
            out[p] = other_order(sized, p, others[-1]) if others else \
                f"no tensor leaving the module's ONNX scope has its output shape {list(want)}"
        elif len(probes) > 1 and len(fitting) > 1 and slot_of is not None and \
                len(by_slot := [f for f in fitting if slot_of(*f) == k]) == 1:
            out[p] = by_slot[0]  # the recurrent op's k-th output: the module's k-th, by computation
            taken.add(out[p][1])
        elif len(probes) > 1 and len(fitting) > 1:
            out[p] = (f"{len(fitting)} tensors leaving the module's ONNX scope have its shape {list(want)}: which "
                      "one holds this output is not known, so none is compared")
        else:
            out[p] = max(fitting)
            taken.add(out[p][1])
    return out


def _calls_apart(graph, idx: list[int], n_calls: int, module: str, names: set[str], by_name: bool,
                 trace: ModuleTrace) -> list[list[int] | str] | str:
    """The module's nodes `idx` split into its `n_calls` calls, in graph order; or why they cannot be. Where the graph
    holds fewer whole calls than ran (the exporter cut away what no output reads), they are the first calls only
    where each call read the one before it in the trace (`chained_in_trace`): a call kept in the graph then needs
    every call before it."""
    keyed: dict[str, list[int]] = {}
    if by_name:  # TorchScript: each call's scope prefix (`/layer1/layer1.0/relu_1`)
        for i in idx:
            key = next((raw for q, raw in _walk_name(graph.node[i].name, names) if q == module), None)
            if key is None:
                keyed = {}
                break
            keyed.setdefault(key, []).append(i)
    found = list(keyed.values()) if keyed else connected(graph, idx)
    found.sort(key=min)
    if len(found) != n_calls and not keyed:  # calls chained into each other: the data flow's cuts
        chained = chained_calls(graph, sorted(idx), n_calls)
        if chained and (all(isinstance(c, list) for c in chained) or chained_in_trace(trace, module, n_calls)):
            found = chained
    if len(found) != n_calls:
        return (f"called {n_calls} times, but its ONNX nodes form {len(found)} group(s): no call is paired with "
                "another call's tensor, so none is compared")
    return found


def _leaving(graph, idx: list[int], graph_outputs: set[str], consumers: dict[str, list[int]]) -> list[tuple[int, str]]:
    """(node index, tensor) of the outputs of nodes `idx` read outside them or by the graph's outputs."""
    inside = set(idx)
    leaving = []
    for i in idx:
        node = graph.node[i]
        for k, t in enumerate(node.output):
            if not t or (k and node.op_type in _SKIP_NORMS):  # a fused norm's residual sum: not the norm's value
                continue
            if t in graph_outputs or any(c not in inside for c in consumers.get(t, [])):
                leaving.append((i, t))
    return leaving


def _residual_sums(graph, scopes: list[tuple[str, ...]], producer: dict, consumers: dict[str, list[int]],
                   graph_outputs: set[str]) -> dict[str, list[tuple[int, str]]]:
    """A fused residual-add + norm's residual sum (its output 3, read on) as a tensor leaving the innermost module
    both its summands come from: the decoder layer whose residual add it is (ONNX Runtime GenAI's builder names the
    node in the next layer's norm scope)."""
    out: dict[str, list[tuple[int, str]]] = {}
    for i, node in enumerate(graph.node):
        if node.op_type not in _SKIP_NORMS or len(node.output) < 4 or not node.output[3]:
            continue
        if not (consumers.get(node.output[3]) or node.output[3] in graph_outputs):
            continue
        chains = [scopes[producer[t][0]] for t in node.input[:2] if t in producer]
        if len(chains) != 2:
            continue
        common = [a for a, b in zip(*chains) if a == b]
        if common:
            out.setdefault(common[-1], []).append((i, node.output[3]))
    return out


def _move_folded_batchnorms(trace: ModuleTrace, tensors: dict[str, str], op_types: dict[str, str],
                            unmapped: dict[str, str]) -> None:
    """BatchNorm folded into the preceding module's conv: the BN owns no node, its producer's tensor holds the
    BN output. Move the tensor to the BN and leave the producer unmapped."""
    for q in trace.order:
        if trace.types.get(q) in _BN_TYPES and q not in tensors:
            prod = trace.producers.get(q)
            if prod and prod in tensors and trace.is_leaf(prod):
                tensors[q] = tensors.pop(prod)
                op_types[q] = op_types.pop(prod)
                unmapped.pop(q, None)
                unmapped[prod] = f"BatchNorm {q} was folded into it by the exporter: its ONNX output is the BN's"
        elif trace.types.get(q) in _BN_TYPES and q in tensors:  # the exporter named the fused conv after the BN
            prod = trace.producers.get(q)
            if prod and prod not in tensors and trace.is_leaf(prod) and prod in unmapped:
                unmapped[prod] = (f"folded with BatchNorm {q} into one ONNX {op_types[q]} by the exporter: its own "
                                  "output is not in the graph (the row of the BN holds the pair's)")


def static_shapes(model: onnx.ModelProto, types: dict[str, onnx.TypeProto] | None = None) -> dict[str, tuple | None]:
    """Each tensor's dimensions (None for one left open), from `types` (`graph.plan.tensor_types(model)`) where the
    caller has them, else inferred here (best effort: where inference cannot run, the declared shapes)."""
    return {name: static_dims(ty) for name, ty in graph_types(model, types).items()}


def _sized_fits(sized: SizedShapes, module: str, tensor: str, static: tuple | None) -> bool:
    """Where the static shape leaves axes open, the shapes at `sized.sizes` must agree position by position."""
    if static is not None and None not in static:
        return True  # already checked exactly
    got, want = sized.onnx.get(tensor), sized.torch.get(module)
    return want is None or _shape_fits(got, want)


def _shape_fits(onnx_shape: tuple | None, torch_shape: tuple) -> bool:
    if onnx_shape is None:
        return True  # unknown: accept, the value comparison will tell
    if len(onnx_shape) != len(torch_shape):
        return False
    return all(a is None or a == b for a, b in zip(onnx_shape, torch_shape))

"""A foreign ONNX (the user's own deployed file) mapped onto our probe names: by scope names, else by structure.

The user's exporter, simplifier or hand edits decide the file's names: our table (`naming.py`) does not carry over.
1. **scope names**: the file's nodes carry the exporter's scopes (`/pts_backbone/blocks.1/blocks.1.0/Conv`, or
   `pkg.torch.onnx.name_scopes` metadata), read as for our own export (`map_modules_to_onnx`), and under our names
   where the stage knows another module tree of the same network (`Stage.foreign_names`: autoware-ml's, the builder's);
2. **structure**: the compute nodes (Conv, Gemm, MatMul, …) of both are paired by op type, weight shapes and place
   (`align_anchors`); a probe tensor of ours is reached from its nearest compute node (or graph input) by a chain of
   ops followed in the file (a fused projection's part: `fused_parts`), past its reach by our name (`same_names.py`).
A quantized file is read as the float computation it stands for (`quantized_forms.float_view`: dynamic INT8, ORT's
fused forms, QOperator, a quantized embedding act as the op they replace); an integer tensor no float tensor holds is
read through a DequantizeLinear added to the file (`ForeignMap.views`); a constant-only tensor is no counterpart.
What a deployment inserts is looked through (`PRECISION_STEPS`): a weight behind DequantizeLinear (`quantize_static`)
or a Cast is that weight, of the quantized initializer's shape; a chain is followed past onnxconverter-common's Casts
(one per consumer of an input) and Q/DQ pairs on activations, a probe tensor quantized in the file maps to the
dequantized tensor, a ReLU the quantizer folded into its QuantizeLinear to that pair's output; LSTM, GRU and RNN are
anchors. A probe whose correspondence is not certain (its compute node unaligned, a chain step with no or several
fitting consumers) is left unmapped with the reason: two tensors that do not correspond are never compared.
A probe not found whose module the file computes as a fused norm's output (the builder's `GatedRMSNorm`, named
after its parent's scope) maps onto that output (`fused_outputs.py`); one whose module it computes only inside a fused
op (a MoE's top-k and routing weights, an attention fusion's rotated q) is said as inside that op, counted apart from
the missing, and one the file holds outside it is mapped by the op computing it (`inside_fused.py`). The alignment
reads each graph through `graph_view._Graph`.
Past the probes, every node is paired where it can be (`align_nodes`); those left over are the graphs' differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from cp_debug.graph.plan import tensor_types
from cp_debug.probes.block_forms import by_names, by_weights
from cp_debug.probes.constant_values import same_constants
from cp_debug.probes.fused_outputs import fused_outputs
from cp_debug.probes.fused_parts import fused_views, read_reshaped
from cp_debug.probes.graph_view import _Graph
from cp_debug.probes.inside_fused import inside_fused
from cp_debug.probes.graph_diff import (CANDIDATE, REFERENCE, GraphDifferences, norms_alike, unmatched_nodes,
                                        without_twins)
from cp_debug.probes.naming import ProbeMap, ScopeRename, map_modules_to_onnx, node_scopes
from cp_debug.probes.node_pairs import align_nodes
from cp_debug.probes.probe_shapes import one_value_one_probe, same_shapes, scoped_or_matched
from cp_debug.probes.qdq_pairs import (MAX_CHAIN, PRECISION_STEPS, dequantized, only_consumer, past_inserted,
                                       quantized, through_casts)
from cp_debug.probes.same_names import same_name
from cp_debug.probes.sized_shapes import SizedShapes
from cp_debug.probes.torch_trace import ModuleTrace

_COMMUTATIVE = frozenset({"Add", "Mul"})
# ops the quantizer folds into the QuantizeLinear after them (its range clips what they clip)
_FOLDED_INTO_Q = frozenset({"Relu", "Clip"})


@dataclass(frozen=True)
class ForeignMap:
    """Our probe names on the foreign graph's tensors; `how` says per probe whether scope names or structure
    found it, `probe_map.unmapped` why the others have no tensor."""

    probe_map: ProbeMap
    how: dict[str, str] = field(default_factory=dict)  # module -> "scope" | "structure"
    differences: GraphDifferences = GraphDifferences()  # nodes with no counterpart on the other side
    # the dequantized views the probes read (a QOperator file's integer-only tensors): tensor -> (integer tensor,
    # scale, zero point), each a DequantizeLinear to add to the file (`quantized_forms.with_dequantized`)
    views: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    fused: dict[str, tuple] = field(default_factory=dict)  # a fused projection's part: fused_parts.FusedViews.views

    def counts(self) -> dict[str, int]:
        ways = list(self.how.values())
        return {"scope": ways.count("scope"), "structure": ways.count("structure")}


def map_foreign(foreign: onnx.ModelProto, ours: onnx.ModelProto, our_map: ProbeMap,
                trace: ModuleTrace, stage: str = "", rename: ScopeRename | None = None,
                sized: SizedShapes | None = None) -> ForeignMap:
    """Map every probe `our_map` knows (a module → tensor of `ours`) onto a tensor of `foreign`, and list the nodes
    of either graph with no counterpart in the other (`stage` names the file they are in). `rename` reads the
    scopes of a file exported from another module tree of the same network (`naming.node_scopes`); `sized`: both
    sides' shapes at a non-square input (`sized_shapes.py`), telling a module's output in another axis order apart."""
    module_names = [q for q in trace.order if q in our_map.tensors or q in our_map.unmapped]
    inferred: dict[int, dict] = {}

    def types(model: onnx.ModelProto) -> dict:  # a graph's tensor types, inferred once for the readers below
        if id(model) not in inferred:
            inferred[id(model)] = tensor_types(model)
        return inferred[id(model)]

    by_scope = map_modules_to_onnx(foreign, trace, rename, sized=sized, types=types(foreign))
    a, b = _Graph.of(ours, foreign), _Graph.of(foreign, ours)
    pair = by_names(a, b, by_weights(a, b, ours, foreign, align_anchors(a, b)))  # twins by weights', names
    matched, why_not = _match(a, b, pair, [our_map.tensors[q] for q in module_names if q in our_map.tensors])
    fused = fused_views(a, b, pair, ours, foreign, list(why_not), _follow)  # q, k, v of one qkv_proj MatMul
    matched.update(fused.tensors)
    producers = {t: n.op_type for n in b.model.graph.node for t in n.output}
    producers.update({v: view[0] for v, view in fused.views.items()})
    index = {t: i for i, n in enumerate(foreign.graph.node) for t in n.output}
    index.update({v: index.get(t, -1) for v, (t, _, _) in b.views.items()})
    index.update({v: max(index.get(t, -1) for t in view[1:] if isinstance(t, str)) for v, view in fused.views.items()})
    tensors: dict[str, str] = {}
    op_types: dict[str, str] = {}
    unmapped: dict[str, str] = {}
    how: dict[str, str] = {}
    for q in module_names:
        scoped = b.float_of.get(by_scope.tensors.get(q, ""), by_scope.tensors.get(q, ""))  # a quantized tensor's
        if scoped and b.holds(scoped):  # float value (a DynamicQuantizeLinear's input), never the integer tensor
            folded = scoped in b.clipped and q in our_map.tensors  # a QOperator op holding the ReLU after it
            if folded and isinstance(why := _as_computed(a, b, our_map.tensors[q], scoped), tuple):
                unmapped[q] = f"not found in the deployed graph: {why[0]}"
                continue
            tensors[q], how[q] = scoped_or_matched(a, our_map.tensors.get(q), scoped, matched, producers, b), "scope"
        elif q not in our_map.tensors:
            unmapped[q] = our_map.unmapped.get(q, "no tensor in cp_debug's own export either")
            continue
        elif our_map.tensors[q] in matched:
            tensors[q], how[q] = matched[our_map.tensors[q]], "structure"
        else:
            unmapped[q] = f"not found in the deployed graph: {why_not.get(our_map.tensors[q], 'no match')}"
            continue
        op_types[q] = producers.get(tensors[q], "Input")
    same_shapes(ours, foreign, our_map, tensors, how, op_types, unmapped, types)
    one_value_one_probe(our_map, tensors, how, op_types, unmapped)
    names = set(trace.call_counts) | {trace.scope_of(p)[0] for p in trace.order}
    fused.views.update(read_reshaped(foreign, trace, node_scopes(foreign, names, rename), types(foreign), tensors, how,
                                     op_types, unmapped, index))  # Qwen3's q_norm, [1, S, 64] in the builder's file
    fused.views.update(fused_outputs(ours, foreign, our_map.tensors, trace, tensors, op_types, how, unmapped, index,
                                     types))  # Qwen3.5's gated norm: the builder's GatedRMSNorm's output
    inside, computed = inside_fused(ours, foreign, our_map.tensors, tensors, op_types, how, unmapped, types)
    their_map = ProbeMap(tensors, op_types, unmapped, {t: index.get(t, -1) for t in tensors.values()}, inside=inside)
    nodes = norms_alike(a.model, b.model, align_nodes(a, b, _with_scopes(a, b, pair, our_map, tensors, how)))
    differences = without_twins(
        unmatched_nodes(b.model, b.unpaired(set(nodes.values())), their_map.segment_ends(tensors, computed),
                        CANDIDATE, stage, node_scopes(b.model, names, rename), types),
        unmatched_nodes(a.model, a.unpaired(set(nodes) | _folded_into_q(a, b, nodes)),
                        our_map.segment_ends(tensors, computed), REFERENCE, stage, node_scopes(a.model, names), types),
        fused=(ours, foreign))
    held = set(tensors.values())
    return ForeignMap(their_map, how, differences, {t: b.views[t] for t in held if t in b.views},
                      {t: v for t, v in fused.views.items() if t in held})


def _with_scopes(a: "_Graph", b: "_Graph", pair: dict[int, int], our_map: ProbeMap, theirs: dict[str, str],
                 how: dict[str, str]) -> dict[int, int]:
    """The anchors' pairs and the nodes a module's scope pairs (the producer of its tensor on each side, one op
    type): a file from another exporter (TorchScript's GroupNorm and SiLU against dynamo's) shares no structural key
    around many layers, yet each still computes the module its scope names — not a graph difference."""
    out = dict(pair)
    used = set(out.values())
    for q, t in theirs.items():
        i, j = a.producer.get(our_map.tensors.get(q, "")), b.producer.get(t)
        if how.get(q) != "scope" or i is None or j is None or i[0] in out or j[0] in used:
            continue
        if a.model.graph.node[i[0]].op_type == b.model.graph.node[j[0]].op_type:
            out[i[0]] = j[0]
            used.add(j[0])
    return out


def _match(a: "_Graph", b: "_Graph", pair: dict[int, int], wanted: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    found: dict[str, str] = {}
    why: dict[str, str] = {}
    graph_names = {o.name for o in b.model.graph.output} | set(b.inputs)
    for t in wanted:
        if t in graph_names and (t in a.inputs or t in {o.name for o in a.model.graph.output}):
            found[t] = t  # the interface's names (checked against the model beforehand)
            continue
        result = _follow(a, b, pair, t)
        if isinstance(result, tuple) and (named := same_name(a, b, t)):  # a recurrence past `MAX_CHAIN`
            result = _as_computed(a, b, t, named)
        if isinstance(result, tuple):
            why[t] = result[0]
        else:
            found[t] = result
    return found, why


def align_anchors(a: "_Graph", b: "_Graph") -> dict[int, int]:
    """Anchor node of `a` → anchor node of `b`, where the two certainly correspond.

    Each anchor gets two structural keys: its *history* (its signature and, per input, the histories of the nearest
    anchors or graph inputs it is computed from) and its *future* (its signature and the futures of the nearest
    anchors or graph outputs it feeds). Anchors pair where their history is unique in both graphs; the rest pair
    where their future is. Node order does not matter (simplifiers reorder), identical parallel branches part by
    their outputs (`reg` vs `vel`), and one changed layer leaves the layers before it their future and the layers
    after it their history. Anything not unique stays unpaired."""
    pair: dict[int, int] = {}
    for key in ("history", "future"):
        ka, kb = a.keys(key), b.keys(key)
        ua, ub = _unique(ka, set(pair)), _unique(kb, set(pair.values()))
        pair.update({i: ub[k] for k, i in ua.items() if k in ub})
    return pair


def _unique(keys: dict[int, int], taken: set[int]) -> dict[int, int]:
    """key -> node for keys held by exactly one node (all nodes counted), leaving out nodes already paired."""
    seen: dict[int, list[int]] = {}
    for i, k in keys.items():
        seen.setdefault(k, []).append(i)
    return {k: nodes[0] for k, nodes in seen.items() if len(nodes) == 1 and nodes[0] not in taken}


def _follow(a: _Graph, b: _Graph, pair: dict[int, int], t: str, starts: dict | None = None) -> str | tuple[str]:
    """Walk back from our tensor `t` to its anchor (a graph input, or `starts`'s tensor: a fused projection's Split
    part), then the same ops forward in the foreign graph: its tensor, or (reason,) where missing or not unique."""
    steps: list[tuple[str, int, int, bool, int]] = []  # (op type, input slot, output slot, rest constant, node)
    cur = t
    for _ in range(MAX_CHAIN + 1):
        if starts and cur in starts:
            start = starts[cur]
            break
        if cur in a.inputs:
            if cur not in b.inputs:
                return (f"the deployed graph has no input {cur!r}",)
            start = cur
            break
        if cur not in a.producer:
            return ("it is computed from constants only",)
        i, out_slot = a.producer[cur]
        node = a.model.graph.node[i]
        if i in a._anchor_set:
            if i not in pair:
                return (f"its {node.op_type} (weights {a.signature(i)[1]}) has no counterpart in the deployed graph",)
            j = pair[i]
            start = b.model.graph.node[j].output[out_slot] if out_slot < len(b.model.graph.node[j].output) else ""
            if not start:
                return ("its anchor's output is missing in the deployed graph",)
            break
        slot = next((k for k, x in enumerate(node.input) if a.computed(x)), None)
        if slot is None:
            return ("it is computed from constants only",)
        steps.append((node.op_type, slot, out_slot, not any(a.computed(x) for x in node.input[slot + 1:]), i))
        cur = node.input[slot]
    else:
        return (f"more than {MAX_CHAIN} ops from the nearest weighted node",)
    cur = start
    for op, slot, out_slot, rest_constant, i in reversed(steps):
        fits, cur = _step(b, cur, op, slot, rest_constant)
        fits = fits and same_constants(a, i, b, fits)  # rotate_half's two Slices, told apart by their bounds
        if fits is None:
            continue  # the step's op folded into what the deployment holds
        if len(set(fits)) != 1:
            what = "no" if not fits else "several"
            return (f"{what} {op} after the matching node in the deployed graph (the chain is ambiguous or changed)",)
        outs = b.model.graph.node[fits[0]].output
        if out_slot >= len(outs) or not outs[out_slot]:
            return (f"the deployed graph's {op} lacks output {out_slot}",)
        cur = outs[out_slot]
    return _as_computed(a, b, t, cur)


def _step(b: _Graph, cur: str, op: str, slot: int, rest_constant: bool) -> tuple[list[int] | None, str]:
    """The nodes of `b` after `cur` that fit our chain's next step (None: the step's op is folded away, `cur` stays
    the value), and the tensor they read — past what a deployment or simplifier puts in between."""
    fits = _fitting(b, cur, op, slot, rest_constant)
    if not fits and op not in PRECISION_STEPS:
        past = past_inserted(b, cur)  # through the deployment's Casts and Q/DQ pairs
        fits = _fitting(b, past, op, slot, rest_constant)
        # no ReLU after the pair: ONNX Runtime's INT8 quantizer dropped it, the pair clips as it did (its FP8
        # keeps the ReLU after the pair, which then is the ReLU's counterpart)
        if not fits and past != cur and op in _FOLDED_INTO_Q and quantized(b, cur):
            return None, past
        if not fits and op in _FOLDED_INTO_Q and cur in b.clipped:
            return None, cur  # a QOperator op (QLinearConv) holds the ReLU in its output's range
        cur = past
    if not fits and op not in PRECISION_STEPS and (one := through_casts(b, cur, _fitting, op, slot, rest_constant)):
        return one  # the one Cast of several (onnxconverter-common's keep_io_types) after which the step fits
    if not fits and op != "Reshape" and (moved := only_consumer(b, cur, "Reshape")):
        return _fitting(b, moved, op, slot, rest_constant), moved  # onnxsim's Reshape after a Gemm
    return fits, cur


def _fitting(b: _Graph, t: str, op: str, slot: int, rest_constant: bool) -> list[int]:
    """The `op` nodes of `b` reading `t` in `slot`, their other inputs constants only where ours are (a GELU's
    `x · 0.5` is not its `x · (1 + erf)`); for an Add or Mul of `t` and constants (a bias, a scale) none there, those
    reading it in another slot (a fused MatMul's bias added after it, where the exporter added it before)."""
    nodes = b.model.graph.node

    def alike(j: int, k: int) -> bool:
        return nodes[j].op_type == op and rest_constant == (not any(b.computed(x) for m, x in enumerate(nodes[j].input)
                                                                     if m != k))

    fits = [j for j, k in b.consumers.get(t, []) if k == slot and alike(j, k)]
    if not fits and rest_constant and op in _COMMUTATIVE:
        fits = [j for j, k in b.consumers.get(t, []) if alike(j, k)]
    return fits


def _as_computed(a: _Graph, b: _Graph, t: str, cur: str) -> str | tuple[str]:
    """The deployed tensor `cur` found for our `t`, read as the deployment computes it: the dequantized tensor of a
    Q/DQ pair after it, the pair's input where our ReLU follows and the quantizer folded it; or (reason,)."""
    if cur in b.inner:
        return ("the deployed graph fuses it into the op after it (its value is not in the file)",)
    deq = dequantized(b, cur)
    ours = {a.model.graph.node[j].op_type for j, _ in a.consumers.get(t, [])}
    theirs = {b.model.graph.node[j].op_type for j, _ in b.consumers.get(deq, [])}
    if ours and ours <= _FOLDED_INTO_Q and not ours & theirs:
        if cur in b.clipped:
            return ("the deployed graph's quantized op folds the ReLU after it into its output's range: its value "
                    "before the ReLU is not in the file",)
        return cur  # our ReLU follows and the quantizer folded it: the pair after this tensor is that ReLU's
    return deq


def _folded_into_q(a: _Graph, b: _Graph, nodes: dict[int, int]) -> set[int]:
    """Our ReLUs (and Clips) that ONNX Runtime's quantizer folded into the QuantizeLinear after their producer (its
    counterpart feeds a Q/DQ pair, no such op): that pair, clipping as they did, is theirs — no graph difference."""
    folded = set()
    for i, node in enumerate(a.model.graph.node):
        if node.op_type not in _FOLDED_INTO_Q or not node.input or node.input[0] not in a.producer:
            continue
        k, slot = a.producer[node.input[0]]
        outs = b.model.graph.node[nodes[k]].output if k in nodes else []
        t = outs[slot] if slot < len(outs) else ""
        if t and (quantized(b, t) or t in b.clipped):
            after = {b.model.graph.node[j].op_type for j, _ in b.consumers.get(dequantized(b, t), [])}
            if node.op_type not in after:
                folded.add(i)
    return folded

"""The names a user gives for ONNX nodes, read back to the graph's own node names (`--keep-fp32`, `--exclude-int8`,
`keep-fp32 --search-nodes`, `fix --search-nodes`).

A user copies a name from whatever cp_debug printed: a node name (`node_MatMul_174`, `/body/body.2/Conv`), a
tensor name (`val_178`), the readable probe name an ONNX-only run shows for a dynamo graph
(`encoder.layers.1.self_attn/MatMul_1`: the node's module and op, numbered in node order), or a module's probe
name from a `--torch` table (`encoder.layers.1.self_attn[0]`, `blocks.1.attn#1`): that stands for every node the
module's code made. Each is read back to node names here, in one place, so every command accepts what any command
printed; a name that is none of these is refused with the nearest real ones. `label(node)` is how a node is shown
to people: `module: node`, where the graph says its module.
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable

import onnx

from cp_debug.errors import BadInputError

_FLOATS = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                     onnx.TensorProto.DOUBLE})
_CALL_SUFFIX = re.compile(r"(\[\d+\]|#\d+)+$")  # a probe of one call (`#k`) or one tensor of a tuple (`[i]`)


def readable_probe_names(model: onnx.ModelProto) -> dict[str, str]:
    """Probe name -> tensor for every computed float tensor of an ONNX-only subject, in node order: `module/Op`
    where the node carries its module's scope (the dynamo exporter's `pkg.torch.onnx.name_scopes`:
    `layer1.0.conv1/Conv`, `encoder.layers.1.self_attn/MatMul_1`, not `getitem_3` or `val_184`), else the tensor's
    own name (TorchScript's already reads `/layer1/…/Conv`)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - best effort: without types every tensor counts as float
        inferred = model
    elem = {vi.name: vi.type.tensor_type.elem_type for vi in
            list(inferred.graph.value_info) + list(inferred.graph.output)}
    names: dict[str, str] = {}
    computed = _computed(model)
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for t in node.output:
            if t and t in computed and elem.get(t, onnx.TensorProto.FLOAT) in _FLOATS:
                names[_readable(node, t, names)] = t
    return names


def _computed(model: onnx.ModelProto) -> set[str]:
    """The tensors computed from a graph input: a node's outputs made from constants only (the TorchScript
    exporter's Identity of a shared weight, a folded shape) are no probe, whatever the inputs."""
    from cp_debug.graph.plan import node_reads

    inits = {i.name for i in model.graph.initializer}
    out = {i.name for i in model.graph.input if i.name not in inits}
    for node in model.graph.node:  # graph order is topological; an If's branches read the outer graph too
        if any(t in out for t in node_reads(node)):
            out.update(t for t in node.output if t)
    return out


def scope_chains(model: onnx.ModelProto) -> dict[str, tuple[str, ...]]:
    """Tensor → the chain of module scopes its node was made in, outermost first, for an ONNX file read without its
    module: the dynamo exporter's `pkg.torch.onnx.name_scopes` (`body`, `body.2`), else the TorchScript exporter's
    node name (`/body/body.2/Conv` → `/body`, `/body/body.2`); () where the node says neither (a simplifier's
    `n12`, a top-level op's `/Flatten`)."""
    from cp_debug.probes.naming import _scopes_from_metadata

    out: dict[str, tuple[str, ...]] = {}
    for node in model.graph.node:
        chain = _scopes_from_metadata(node)
        if chain is None:
            parts = node.name.split("/")[1:-1] if node.name.startswith("/") else []
            chain = ["/" + "/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        for t in node.output:
            if t:
                out[t] = tuple(chain)
    return out


def scope_ends(order: list[str], chains: dict[str, tuple[str, ...]], level: str) -> list[str] | None:
    """The probes (of `order`, tensors in execution order) that end the scopes `level` probes: stage, the
    outermost; block, the second (or a shallower leaf); layer, the innermost — each scope's last tensor. None where
    no tensor has a scope (nothing to group by: every tensor stays a probe)."""
    if not any(chains.get(t) for t in order):
        return None
    ends: dict[str, str] = {}
    deeper: set[str] = set()
    for t in order:
        chain = chains.get(t, ())
        for k, scope in enumerate(chain):
            ends[scope] = t
            if k:
                deeper.add(chain[k - 1])
    depth = {s: k + 1 for t in order for k, s in enumerate(chains.get(t, ()))}
    want = {"stage": 1, "block": 2}.get(level)
    if want is None:  # layer: the innermost scopes
        chosen = {ends[s] for s in ends if s not in deeper}
    else:
        chosen = {ends[s] for s in ends if depth[s] == want or (depth[s] < want and s not in deeper)}
    return [t for t in order if t in chosen]


def scope_members(order: list[str], chains: dict[str, tuple[str, ...]], probe: str) -> list[str]:
    """The tensors (of `order`) inside the outermost scope that `probe` ends, `probe` left out: what a refinement
    measures under a scope's probe; [] where `probe` ends no scope."""
    ends: dict[str, str] = {}
    for t in order:
        for scope in chains.get(t, ()):
            ends[scope] = t
    scope = next((s for s in chains.get(probe, ()) if ends.get(s) == probe), None)
    if scope is None:
        return []
    return [t for t in order if t != probe and scope in chains.get(t, ())]


def _readable(node, tensor: str, taken: dict[str, str]) -> str:
    from cp_debug.probes.naming import node_scope

    module = node_scope(node, set())  # the metadata alone: a TorchScript name resolves to no module here
    if not module or len(node.output) > 1:
        return tensor
    base = f"{module}/{node.op_type}"
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


class NodeNames:
    """Every name a user may give for `model`'s nodes, read back to node names. `module_names`: the PyTorch
    module's qualified names where the model was exported here (a TorchScript graph's scopes are read against
    them); empty for an ONNX file."""

    def __init__(self, model: onnx.ModelProto, module_names: Iterable[str] = ()):
        from cp_debug.probes.naming import node_scopes

        self.nodes = [n.name for n in model.graph.node if n.name]
        known = set(module_names)
        chains = node_scopes(model, known)
        self._module = {n.name: (c[-1] if c else None) for n, c in zip(model.graph.node, chains) if n.name}
        self._producer = {t: n.name for n in model.graph.node if n.name for t in n.output if t}
        self._readable = {r: self._producer[t] for r, t in readable_probe_names(model).items() if t in self._producer}
        self._in_module: dict[str, list[str]] = {}
        for n, chain in zip(model.graph.node, chains):
            for q in (chain if n.name else ()):
                self._in_module.setdefault(q, []).append(n.name)

    def module_of(self, node: str) -> str | None:
        """The module whose code made `node`, where the graph says (exporter scopes), else None."""
        return self._module.get(node)

    def label(self, node: str) -> str:
        """`module: node` (`encoder.layers.1.self_attn: node_MatMul_174`), or the node's name alone."""
        module = self.module_of(node)
        return f"{module}: {node}" if module else node

    def lookup(self, name: str) -> tuple[str, ...] | None:
        """The nodes `name` stands for (module/ label forms included, see the module docstring), or None."""
        name = name.strip()
        if ": " in name and name.rpartition(": ")[2] in self._module:  # a label copied whole
            return (name.rpartition(": ")[2],)
        if name in self._module:
            return (name,)
        for table in (self._producer, self._readable):
            if name in table:
                return (table[name],)
        for module in (name, _CALL_SUFFIX.sub("", name)):
            if module in self._in_module:
                return tuple(self._in_module[module])
        return None

    def resolve(self, names: Iterable[str], what: str = "node") -> tuple[str, ...]:
        """Node names for `names` (in order, each once); BadInputError naming each unknown one with the nearest
        real names (`what` says which option asked)."""
        out: list[str] = []
        unknown: list[str] = []
        for name in names:
            if not name.strip():
                continue
            found = self.lookup(name)
            if found is None:
                unknown.append(name)
            else:
                out.extend(found)
        if unknown:
            near = self.nearest(unknown[0])
            hint = f"; nearest: {', '.join(near)}" if near else ""
            more = f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else ""
            raise BadInputError(f"{what} {', '.join(map(repr, unknown[:3]))}{more}: no node, tensor or module of "
                                f"that name in the ONNX graph{hint} (node names, tensor names, the `module/Op` "
                                "names a table shows and module names are accepted)")
        return tuple(dict.fromkeys(out))

    def nearest(self, name: str, n: int = 3) -> list[str]:
        """The names most like `name`; the graph's first node names where none is alike."""
        pool = list(dict.fromkeys([*self.nodes, *self._readable, *self._in_module]))
        return difflib.get_close_matches(name, pool, n=n, cutoff=0.3) or self.nodes[:n]

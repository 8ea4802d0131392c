"""One hooked forward pass that records the module tree as it really ran.

The trace gives the execution order (a module completes after its children), output shapes, which
module produced each module's first input (data flow, used to see BatchNorm folded into its conv), and
the module types. It is the PyTorch side of the name table in `naming.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModuleTrace:
    order: tuple[str, ...]  # qualified names in completion order (root '' excluded)
    shapes: dict[str, tuple[int, ...] | None]  # output shape; None when not a single tensor
    producers: dict[str, str | None]  # module whose output was this module's first input
    types: dict[str, str]  # class name
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)  # direct children that ran, in order
    parents: dict[str, str] = field(default_factory=dict)  # child -> parent ('' for top-level modules)

    def depth(self, name: str) -> int:
        d = 0
        while name:
            name = self.parents.get(name, "")
            d += 1
        return d

    def is_leaf(self, name: str) -> bool:
        return not self.children.get(name)

    def descendants(self, name: str) -> list[str]:
        out: list[str] = []
        for c in self.children.get(name, ()):
            out.extend(self.descendants(c))
            out.append(c)
        return out


def trace_module(module, example_inputs: tuple, *, prefix: str = "") -> ModuleTrace:
    """Run `module(*example_inputs)` once with hooks on every submodule (no grad) and record the tree.

    `prefix` is prepended to every name (for stage wrappers whose children keep full-model names, pass "").
    """
    import torch

    names = {m: n for n, m in module.named_modules()}
    order: list[str] = []
    shapes: dict[str, tuple | None] = {}
    producers: dict[str, str | None] = {}
    types: dict[str, str] = {}
    produced_by: dict[int, str] = {}
    parent_of: dict[str, str] = {}
    children: dict[str, list[str]] = {}
    stack: list[str] = []
    keep_alive: list = []  # tensors whose id() we recorded must stay alive during the pass

    def pre_hook(mod, args):
        name = names[mod]
        if stack:
            parent_of.setdefault(name, stack[-1])
        stack.append(name)
        first = args[0] if args else None
        if isinstance(first, torch.Tensor):
            producers[name] = produced_by.get(id(first))
        else:
            producers[name] = None

    def post_hook(mod, args, out):
        name = names[mod]
        stack.pop()
        if name == "":
            return
        full = prefix + name
        order.append(full)
        types[full] = type(mod).__name__
        if isinstance(out, torch.Tensor):
            shapes[full] = tuple(out.shape)
            produced_by[id(out)] = full
            keep_alive.append(out)
        else:
            shapes[full] = None

    handles = []
    for m in names:
        if getattr(m, "cpdebug_trace_skip", False):  # e.g. fake quantizers: part of their layer, not probes
            continue
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(post_hook))
    try:
        with torch.no_grad():
            module(*example_inputs)
    finally:
        for h in handles:
            h.remove()
    for child, parent in parent_of.items():
        if child == "":
            continue
        key = prefix + parent if parent else ""
        children.setdefault(key, [])
        if prefix + child not in children[key]:
            children[key].append(prefix + child)
    # Children in completion order.
    pos = {n: i for i, n in enumerate(order)}
    kids = {k: tuple(sorted(v, key=lambda n: pos.get(n, 1 << 30))) for k, v in children.items()}
    prods = {prefix + k: v for k, v in producers.items() if k}
    pars = {prefix + c: (prefix + p if p else "") for c, p in parent_of.items() if c}
    return ModuleTrace(tuple(order), shapes, prods, types, kids, pars)

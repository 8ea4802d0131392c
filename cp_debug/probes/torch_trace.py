"""One hooked forward pass that records the module tree as it really ran, call by call.

A probe is a **call site's tensor**, not a module: a module called twice (torchvision's BasicBlock calls `self.relu`
twice) gives two probes, `layer1.0.relu#1` and `layer1.0.relu#2`; a module whose output is a tuple, list, dict or
dataclass (nn.MultiheadAttention's `(attn_output, weights)`, a ModelOutput) gives one probe per tensor in it,
`self_attn[0]`, `head.logits` (`None` entries skipped). A module called once with one tensor out keeps its plain
name. `sites` says, for every probe name, which module, which call and which path into the output it is: the torch
runner reads the value there, the name table (`naming.py`) maps it to its own ONNX tensor.

A module object held under several names (ultralytics' Conv blocks share one `nn.SiLU`; `blocks.0.act` is
`blocks.3.act`) is named, call by call, by the name it was reached through — its name under the calling module, as
both exporters name its nodes' scopes — so the call in `blocks.3` is the probe `blocks.3.act` (`scopes` keeps the
name and its call apart from the site's module, the first of its names, which the torch runner hooks).

The trace gives the execution order (a call completes after its children), output shapes, which probe's value was
each call's first input (data flow, used to see BatchNorm folded into its conv), the module types, and each probe's
element type (`dtypes`: `float32`, `int64`, as torch names it without `torch.`), which tells a tuple's same-shape
members apart (a router's weights and its chosen experts, `probe_dtypes.py`). It is the PyTorch side of the name
table in `naming.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cp_debug.sites import Site, path_name, tensors_in


@dataclass(frozen=True)
class ModuleTrace:
    order: tuple[str, ...]  # probe names (call sites' tensors) in completion order (root '' excluded)
    shapes: dict[str, tuple[int, ...] | None]  # output shape per probe; None when not a tensor
    producers: dict[str, str | None]  # probe whose value was this probe's call's first input
    types: dict[str, str]  # class name, per probe and per call
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)  # call -> its child calls' probes, in order
    parents: dict[str, str] = field(default_factory=dict)  # call -> parent call ('' for top-level calls)
    sites: dict[str, Site] = field(default_factory=dict)  # probe -> where its value is
    calls: dict[str, str] = field(default_factory=dict)  # probe -> its call's name (itself for a plain probe)
    call_counts: dict[str, int] = field(default_factory=dict)  # module (scope name) -> how often it ran
    scopes: dict[str, tuple[str, int]] = field(default_factory=dict)  # call -> (its scope name, which call of it)
    #                                   where that is not (site.module, site.call): a shared module's other names
    handed_up: dict[str, tuple[str, ...]] = field(default_factory=dict)  # call -> the probes whose tensors are
    #                                   members of its output (a child's output handed up: no probe of its own)
    dtypes: dict[str, str] = field(default_factory=dict)  # probe -> its tensor's element type ('float32', 'int64')

    def call_of(self, name: str) -> str:
        return self.calls.get(name, name)

    def site(self, name: str) -> Site:
        return self.sites.get(name) or Site(name)

    def scope_of(self, name: str) -> tuple[str, int]:
        """The module name the exporters give `name`'s call in their scopes, and which call of that name it is."""
        site = self.site(name)
        return self.scopes.get(self.call_of(name)) or (site.module, site.call)

    def depth(self, name: str) -> int:
        name, d = self.call_of(name), 0
        while name:
            name = self.parents.get(name, "")
            d += 1
        return d

    def is_leaf(self, name: str) -> bool:
        return not self.children.get(self.call_of(name))

    def kids(self, name: str) -> tuple[str, ...]:
        """The probes of the calls made directly inside `name`'s call ('' = the top level)."""
        return self.children.get(self.call_of(name) if name else "", ())

    def descendants(self, name: str) -> list[str]:
        out: list[str] = []
        for c in self.kids(name):
            out.extend(self.descendants(c))
            out.append(c)
        return list(dict.fromkeys(out))

    def to_json(self) -> dict:
        """The trace as JSON, every table in its order (the trace cache keeps it: `trace_cache.py`); `from_json`
        gives back an equal trace. ValueError where a site's path holds a step JSON cannot give back as it is (a
        dict key that is neither an int nor a str)."""
        for site in self.sites.values():
            if not all(type(step) in (int, str) for step in site.path):
                raise ValueError(f"a step of {site.path!r} is neither an int nor a str")
        return {"order": list(self.order),
                "shapes": {k: None if v is None else list(v) for k, v in self.shapes.items()},
                "producers": self.producers, "types": self.types,
                "children": {k: list(v) for k, v in self.children.items()}, "parents": self.parents,
                "sites": {k: [s.module, s.call, list(s.path)] for k, s in self.sites.items()}, "calls": self.calls,
                "call_counts": self.call_counts, "scopes": {k: list(v) for k, v in self.scopes.items()},
                "handed_up": {k: list(v) for k, v in self.handed_up.items()}, "dtypes": self.dtypes}

    @classmethod
    def from_json(cls, d: dict) -> "ModuleTrace":
        return cls(tuple(d["order"]), {k: None if v is None else tuple(v) for k, v in d["shapes"].items()},
                   dict(d["producers"]), dict(d["types"]), {k: tuple(v) for k, v in d["children"].items()},
                   dict(d["parents"]), {k: Site(m, c, tuple(path)) for k, (m, c, path) in d["sites"].items()},
                   dict(d["calls"]), dict(d["call_counts"]), {k: (m, c) for k, (m, c) in d["scopes"].items()},
                   {k: tuple(v) for k, v in d.get("handed_up", {}).items()}, dict(d.get("dtypes", {})))


def trace_module(module, example_inputs: tuple, *, prefix: str = "") -> ModuleTrace:
    """Run `module(*example_inputs)` once with hooks on every submodule (no grad) and record the tree.

    `prefix` is prepended to every name (for stage wrappers whose children keep full-model names, pass "").
    """
    import torch

    names = {m: n for n, m in module.named_modules()}
    aliases: dict[int, list[str]] = {}  # a module held under several names: all of them
    for n, m in module.named_modules(remove_duplicate=False):
        aliases.setdefault(id(m), []).append(n)
    reached: dict[tuple[str, int], str] = {}  # (module, call) -> the name it was reached through
    counts: dict[str, int] = {}
    events: list[tuple[str, int, list[tuple[tuple, tuple, str]], str]] = []  # (module, call, tensors, type)
    first_in: dict[tuple[str, int], tuple | None] = {}  # (module, call) -> the (module, call, path) of arg 0
    produced_by: dict[int, tuple] = {}
    parent_of: dict[tuple[str, int], tuple[str, int] | None] = {}
    stack: list[tuple[str, int]] = []
    versions: dict[tuple[str, int], dict[int, int]] = {}  # a running call's tensor inputs -> their version
    keep_alive: list = []  # tensors whose id() we recorded must stay alive during the pass
    handed_of: dict[tuple[str, int], list[tuple]] = {}  # (module, call) -> its output's members an earlier call made

    def pre_hook(mod, args):
        name = names[mod]
        counts[name] = counts.get(name, 0) + 1
        key = (name, counts[name])
        parent_of[key] = stack[-1] if stack else None
        reached[key] = _reached_as(name, aliases.get(id(mod), ()), reached.get(stack[-1]) if stack else None)
        stack.append(key)
        versions[key] = {id(a): a._version for a in args if isinstance(a, torch.Tensor)}
        first = args[0] if args else None
        first_in[key] = produced_by.get(id(first)) if isinstance(first, torch.Tensor) else None

    def post_hook(mod, args, out):
        key = stack.pop()
        if key[0] == "":
            return
        found, handed = [], []
        seen = versions.pop(key, {})
        # an input handed back untouched (its version counter unchanged; an in-place ReLU changes it)
        passed = {id(a) for a in args if isinstance(a, torch.Tensor) and seen.get(id(a)) == a._version}
        for path, t in tensors_in(out):
            # a container's tensor that an earlier call made (a child's output handed up) is that call's probe
            # already, and an input handed back as it is (Identity, Dropout in eval) is no value of this call:
            # the exporter drops such a module, and it is not "missing"
            if path and id(t) in produced_by:
                handed.append(produced_by[id(t)])
                continue
            if id(t) in passed:
                continue
            found.append((path, tuple(t.shape), str(t.dtype).removeprefix("torch.")))
            produced_by.setdefault(id(t), (*key, path))
            keep_alive.append(t)
        events.append((*key, found, type(mod).__name__))
        if handed:
            handed_of[key] = handed

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
    modules = {prefix + n for names_of in aliases.values() for n in names_of if n}
    return _tables(events, reached, first_in, parent_of, prefix, modules, handed_of)


def _reached_as(name: str, aliases, caller: str | None) -> str:
    """The name a call of module `name` goes by: itself, or for a module held under several `aliases` the one
    right under its `caller`'s name (the fewest levels below it); `name` where none or several fit."""
    if len(aliases) < 2 or caller is None:
        return name
    under = [a for a in aliases if not caller or a.startswith(caller + ".")]
    depth = {a: a.count(".") for a in under}
    best = [a for a in under if depth[a] == min(depth.values())]
    return best[0] if len(best) == 1 else name


def _tables(events, reached, first_in, parent_of, prefix, modules, handed_of) -> ModuleTrace:
    """The name tables from the recorded calls: call names (`m` or `m#k`, `m` the name the call was reached
    through), probe names, the call tree."""
    counts: dict[str, int] = {}
    scope: dict[tuple[str, int], tuple[str, int]] = {}  # (module, call) -> (the name reached through, its k-th call)
    for key in sorted(reached, key=lambda k: (k[0], k[1])):
        counts[reached[key]] = counts.get(reached[key], 0) + 1
        scope[key] = (reached[key], counts[reached[key]])

    def call_name(module: str, call: int) -> str:
        if not module:
            return ""
        name, k = scope[(module, call)]
        return prefix + name + (f"#{k}" if counts.get(name, 1) > 1 else "")

    order: list[str] = []
    shapes: dict[str, tuple | None] = {}
    types: dict[str, str] = {}
    dtypes: dict[str, str] = {}
    sites: dict[str, Site] = {}
    calls: dict[str, str] = {}
    probes_of: dict[str, list[str]] = {}  # call -> its probes
    scopes = {call_name(*key): (prefix + name, k) for key, (name, k) in scope.items()
              if key[0] and (name, k) != key}
    probe_at: dict[tuple, str] = {}  # (module, call, path) -> probe
    for module, call, found, kind in events:
        cname = call_name(module, call)
        types[cname] = kind
        plain = len(found) == 1 and found[0][0] == ()
        for path, shape, dtype in found:
            probe = cname if plain else path_name(cname, path, modules)
            order.append(probe)
            shapes[probe], types[probe], dtypes[probe] = shape, kind, dtype
            sites[probe], calls[probe] = Site(prefix + module, call, path), cname
            probes_of.setdefault(cname, []).append(probe)
            probe_at[(module, call, path)] = probe
    producers = {}
    for module, call, _, _ in events:
        src = first_in.get((module, call))
        prod = probe_at.get(src) if src is not None else None
        for probe in probes_of.get(call_name(module, call), ()):
            producers[probe] = prod
    pos = {p: i for i, p in enumerate(order)}
    children: dict[str, list[str]] = {}
    parents: dict[str, str] = {}
    for (module, call), parent in parent_of.items():
        if not module:
            continue
        cname = call_name(module, call)
        pname = call_name(*parent) if parent is not None else ""
        parents[cname] = pname
        children.setdefault(pname, [])
    for cname, pname in parents.items():
        # a call with no tensor out stands in the tree through its children's probes
        children[pname].extend(probes_of.get(cname) or _through(cname, parents, probes_of))
    kids = {k: tuple(sorted(dict.fromkeys(v), key=lambda n: pos.get(n, 1 << 30))) for k, v in children.items()}
    handed_up = {call_name(*key): tuple(probe_at[src] for src in srcs if src in probe_at)
                 for key, srcs in handed_of.items()}
    return ModuleTrace(tuple(order), shapes, producers, types, kids, parents, sites, calls,
                       {prefix + m: n for m, n in counts.items() if m}, scopes,
                       {k: v for k, v in handed_up.items() if v}, dtypes)


def _through(call: str, parents: dict[str, str], probes_of: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for c, p in parents.items():
        if p == call:
            out.extend(probes_of.get(c) or _through(c, parents, probes_of))
    return out

"""A probe's place in a module's run: which module, which of its calls, which tensor of the call's output (`Site`),
and how its name is written (`path_name`: `attn[0]`, `head.logits`). Below both the module trace (`probes/`) that
names the sites and the torch runner (`backends/`) that reads their values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

_MAX_DEPTH = 3  # nested containers followed this deep (a tuple of tuples: `lstm[1][0]`)


@dataclass(frozen=True)
class Site:
    """Where a probe's value is: `module`'s `call`-th call (1-based), at `path` into its output (() = the output
    itself, or the first tensor of a container for a caller that asks by module name alone)."""

    module: str
    call: int = 1
    path: tuple = ()


def tensors_in(out: Any, depth: int = 0) -> Iterator[tuple[tuple, Any]]:
    """(path, tensor) for every tensor in a module's output: a tensor, or one inside tuples, lists, dicts and
    dataclasses (ModelOutput is a dict), `depth` levels deep."""
    import torch

    if isinstance(out, torch.Tensor):
        yield (), out
        return
    if depth >= _MAX_DEPTH:
        return
    if isinstance(out, dict):
        items = [((k,), v) for k, v in out.items()]
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        items = [((f.name,), getattr(out, f.name)) for f in dataclasses.fields(out)]
    elif isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple: by field name
        items = [((f,), v) for f, v in zip(out._fields, out)]
    elif isinstance(out, (tuple, list)):
        items = [((i,), v) for i, v in enumerate(out)]
    else:
        return
    for head, value in items:
        for tail, t in tensors_in(value, depth + 1):
            yield head + tail, t


def at_path(out: Any, path: tuple) -> Any:
    """The value at `path` in a module's output (see `tensors_in`); None where it is not there."""
    for step in path:
        if isinstance(out, dict):
            out = out.get(step)
        elif isinstance(step, str):
            out = getattr(out, step, None)
        elif isinstance(out, (tuple, list)) and isinstance(step, int) and step < len(out):
            out = out[step]
        else:
            return None
    return out


def module_of_probe(name: str) -> str:
    """The module a probe name is written from, less its output index (`attn[0]`) and call number (`relu#2`); a
    key written after a dot (`head.logits`) is not told from a child module and stays."""
    return name.split("[", 1)[0].split("#", 1)[0]


def path_name(call: str, path: tuple, modules: set[str]) -> str:
    """`call[0]`, `call.logits`, `call[1][0]`: an index in brackets, a key or field after a dot (in brackets where
    the dotted name would be a module's own name, or the key is no identifier)."""
    name = call
    for step in path:
        dotted = f"{name}.{step}"
        name = dotted if isinstance(step, str) and step.isidentifier() and dotted not in modules \
            else f"{name}[{step!r}]" if isinstance(step, str) else f"{name}[{step}]"
    return name

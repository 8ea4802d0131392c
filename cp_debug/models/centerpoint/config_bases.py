"""A config file's `_base_` chain read without running it: where the chain loops back on itself.

mmengine's `Config.fromfile` follows `_base_` by recursion and has no guard against a loop (a.py → b.py → a.py):
it recurses until Python's limit, and finalizers that run in that depth fail too ("Exception ignored in
sys.unraisablehook", over and over, instead of one line). `base_loop` reads each file's top-level `_base_`
assignment as Python syntax (`ast`: nothing of the file runs), follows the chain and names the first loop found.
"""

from __future__ import annotations

import ast
from pathlib import Path


def base_loop(path: Path) -> list[Path] | None:
    """The files of the first `_base_` loop reachable from `path` (the repeated file last), else None. Files that
    are missing, not Python or unreadable are left to mmengine, which says what is wrong with them."""
    done: set[Path] = set()

    def visit(p: Path, chain: list[Path]) -> list[Path] | None:
        if p in chain:
            return chain[chain.index(p):] + [p]
        if p in done:
            return None
        for base in _bases(p):
            found = visit(base, chain + [p])
            if found is not None:
                return found
        done.add(p)
        return None

    return visit(path.resolve(), [])


def _bases(p: Path) -> list[Path]:
    """The `_base_` files a Python config names at its top level, resolved against its folder (the strings only)."""
    if p.suffix != ".py" or not p.is_file():
        return []
    try:
        tree = ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            value = node.value
            items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
            names += [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    return [(p.parent / n).resolve() for n in names]

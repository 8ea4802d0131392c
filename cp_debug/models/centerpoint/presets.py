"""The named CenterPoint presets, read from their one home: the config files shipped in `configs/NAME.py`.

A preset is an AWML-syntax config file, so `--preset demo` and `--config .../configs/demo.py` read the same thing.
mmengine is optional (the `[config]` extra), so the shipped files are not read through it: they are our own files,
written with literals, `dict(...)`, names and constant subscripts only, and `_literal_file` evaluates exactly that
from the syntax tree (nothing is executed; anything else is an internal error), then merges the `_base_` chain as
mmengine does (dicts key by key, `_delete_=True` replaces). A user's file (a name ending in `.py`) is read by
`config_file.read_config` through mmengine. Each preset is parsed once per process (cached).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cp_debug.errors import BadInputError

if TYPE_CHECKING:  # pragma: no cover - the config (numpy) loads where a preset is read, not where its name is checked
    from cp_debug.models.centerpoint.config import CenterPointConfig

# The presets in the order people are shown them (help, errors); each is the file configs/NAME.py.
PRESET_NAMES = ("awml-base", "awml-j6gen2", "awml-760", "demo", "tiny", "convnextpc-demo")


def as_config(preset: "str | CenterPointConfig") -> CenterPointConfig:
    """A CenterPointConfig as it is, else `get_preset(preset)` (a preset name or a config file)."""
    from cp_debug.models.centerpoint.config import CenterPointConfig

    return preset if isinstance(preset, CenterPointConfig) else get_preset(preset)


def configs_dir() -> Path:
    """The folder of the shipped config files (cp_debug/models/centerpoint/configs)."""
    from importlib.resources import files

    return Path(str(files("cp_debug.models.centerpoint") / "configs"))


def preset_config_path(name: str) -> Path:
    """The config file shipped for preset `name` (cp_debug/models/centerpoint/configs/NAME.py)."""
    get_preset(name)
    return configs_dir() / f"{name}.py"


def get_preset(name: str) -> CenterPointConfig:
    """The preset called `name`, or the model of the config file `name` when it ends in `.py` (AWML, read_config)
    or `.yaml` / `.yml` (autoware-ml, read_yaml_config); an unknown name is a BadInputError that lists the known
    ones."""
    if name.endswith(".py"):
        from cp_debug.models.centerpoint.config_file import read_config

        return read_config(name)
    if name.lower().endswith((".yaml", ".yml")):
        from cp_debug.models.centerpoint.config_yaml import read_yaml_config

        return read_yaml_config(name)
    if name not in PRESET_NAMES:
        raise BadInputError(f"unknown CenterPoint preset {name!r}: choose one of {', '.join(PRESET_NAMES)}, or give "
                            "a config file (AWML .py or autoware-ml .yaml)")
    return _shipped(name)


@functools.lru_cache(maxsize=None)
def _shipped(name: str) -> CenterPointConfig:
    from cp_debug.models.centerpoint.config_file import config_from_dict

    data = _literal_file(configs_dir() / f"{name}.py")
    return config_from_dict(data, name=name, description=str(data.get("cp_debug_description") or ""))


# -- the shipped files, without mmengine --------------------------------------------------------------------
def _literal_file(path: Path) -> dict[str, Any]:
    """The top-level names of a shipped config file, its `_base_` files merged under it (mmengine's order)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
            raise RuntimeError(f"{path}:{stmt.lineno}: a shipped config holds only `name = value` statements")
        names[stmt.targets[0].id] = _value(stmt.value, names, path)
    bases = names.pop("_base_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged.update(_literal_file((path.parent / base).resolve()))
    return _merge(names, merged)


def _value(node: ast.expr, names: dict[str, Any], path: Path) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_value(e, names, path) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_value(k, names, path): _value(v, names, path) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args
            and all(k.arg is not None for k in node.keywords)):
        return {k.arg: _value(k.value, names, path) for k in node.keywords}
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.Subscript):
        return _value(node.value, names, path)[_value(node.slice, names, path)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand, names, path)
    raise RuntimeError(f"{path}:{node.lineno}: {ast.unparse(node)!r} is not a literal, dict(...), a name defined "
                       "above or a constant subscript")


def _merge(child: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """mmengine's `_merge_a_into_b`: a dict merges into the base's dict of the same key unless it says
    `_delete_=True`; anything else replaces."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and key in out and isinstance(out[key], dict):
            value = dict(value)
            out[key] = value if value.pop("_delete_", False) else _merge(value, out[key])
        else:
            out[key] = value
    return out

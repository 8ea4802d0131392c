"""--keep-fp32 / --exclude-int8 as a user names them, read back to node names of the run's graphs."""

from __future__ import annotations

from dataclasses import replace


def resolved(opts, stages: list):
    """`opts` (`BisectOptions`) with --keep-fp32 / --exclude-int8 naming nodes of the stages' graphs (each stage takes
    its own; a SPEC@DIR candidate's deployed files count too), in any form cp_debug prints (`probes/node_names.py`):
    read back to the graphs' node names here, once, for every runner, segment and bundle after."""
    from cp_debug.probes.node_names import NodeNames

    if not (opts.keep_fp32 or opts.exclude_int8):
        return opts
    tables = [NodeNames(st.onnx(), _module_names(st)) for st in stages]
    lists = {}
    for flag, field_name in (("--keep-fp32", "keep_fp32"), ("--exclude-int8", "exclude_int8")):
        given = getattr(opts, field_name)
        lists[field_name] = _resolve_in_any(tables, given, flag) if given else ()
    return replace(opts, **lists)


def _module_names(stage) -> set[str]:
    """The qualified names of a stage's PyTorch module (a TorchScript graph's node scopes are read against them)."""
    module = getattr(stage, "module", None)
    return {q for q, _ in module.named_modules()} if module is not None else set()


def _resolve_in_any(tables: list, names: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """Each name read back to node names in the first graph that knows it; the first graph's nearest names for one
    that none knows."""
    out: list[str] = []
    for name in names:
        found = next((hit for t in tables if (hit := t.lookup(name)) is not None), None)
        if found is None:
            tables[0].resolve([name], f"{flag} names")  # raises, naming the nearest
        out.extend(found or ())
    return tuple(dict.fromkeys(out))

"""Names of a fix's set: `FILE:NODE` keys over the two AWML files, and the torch module each node came from."""

from __future__ import annotations

from typing import Mapping, Sequence

SEP = ":"  # FILE:NODE


def split_key(key: str) -> tuple[str, str]:
    file, _, node = key.partition(SEP)
    return file, node


def per_file(keep: Sequence[str], files: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """{file: its kept node names} of FILE:NODE keys (every file listed, empty where nothing is kept)."""
    out: dict[str, list[str]] = {f: [] for f in files}
    for key in keep:
        file, node = split_key(key)
        out[file].append(node)
    return {f: tuple(nodes) for f, nodes in out.items()}


def node_modules(models: Mapping, module_names: set[str] | None = None) -> dict[str, str | None]:
    """FILE:NODE -> the innermost torch module the exporter recorded for the node (its scope name), given the
    model's qualified module names; without them, the scope's own last component."""
    from cp_debug.probes.naming import node_scopes

    out = {}
    for f, model in models.items():
        names = module_names or {p for node in model.graph.node for p in node.name.split("/")[1:-1] if p}
        for node, chain in zip(model.graph.node, node_scopes(model, names)):
            out[f"{f}{SEP}{node.name}"] = chain[-1] if chain else None
    return out


def layer_nodes(models: Mapping, layers: Sequence[str], module_names: set[str]) -> dict[str, list[str]]:
    """{file: the ONNX node names created by the modules `layers`} (e.g. the Conv of each excluded layer)."""
    wanted = set(layers)
    out: dict[str, list[str]] = {f: [] for f in models}
    for key, module in node_modules(models, module_names).items():
        if module in wanted:
            file, node = split_key(key)
            out[file].append(node)
    return out


def mapped_node_modules(models: Mapping, probe_maps: Sequence) -> dict[str, str | None]:
    """FILE:NODE -> the innermost module whose probe is one of the node's outputs, by the probe maps bisect makes of
    a deployed pair (`subjects.deployed.deployed_stages`: scope names, else structure), one per file in order; None
    where no output of the node is a module's tensor."""
    out: dict[str, str | None] = {}
    for (file, model), pm in zip(models.items(), probe_maps):
        by_tensor: dict[str, str] = {}
        for module, tensor in pm.tensors.items():
            if tensor not in by_tensor or len(module) > len(by_tensor[tensor]):
                by_tensor[tensor] = module
        for node in model.graph.node:
            out[f"{file}{SEP}{node.name}"] = next((by_tensor[t] for t in node.output if t in by_tensor), None)
    return out

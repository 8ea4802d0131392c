"""Deployed folders made from cp_debug's own export, changed as a user's pipeline changes them: graphs edited through
onnx-graphsurgeon (a planted op, every node and tensor renamed n0, n1, … / t0, t1, … as some simplifiers write
them) and written under AWML's file names."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs


def edited(model: onnx.ModelProto, edit) -> onnx.ModelProto:
    graph = gs.import_onnx(copy.deepcopy(model))  # graphsurgeon shares the proto's weights: never edit ours
    edit(graph)
    return gs.export_onnx(graph.cleanup().toposort())


def rename(graph: gs.Graph, table: dict[str, str] | None = None) -> None:
    keep = {t.name for t in graph.inputs + graph.outputs}  # the interface keeps its names
    for k, node in enumerate(graph.nodes):
        node.name = f"n{k}"
    for k, tensor in enumerate(list(graph.tensors().values())):
        if tensor.name not in keep:
            if table is not None:
                table[tensor.name] = f"t{k}"
            tensor.name = f"t{k}"


def write_folder(folder: Path, subject, edits: dict) -> Path:
    """Every stage of `subject` as `folder/<stage>.onnx`, with the edits of `edits[stage]` applied in turn."""
    folder.mkdir()
    for st in subject.stages:
        model = st.onnx()
        for edit in edits.get(st.name, ()):
            model = edited(model, edit)
        onnx.save(model, folder / f"{st.name}.onnx")
    return folder

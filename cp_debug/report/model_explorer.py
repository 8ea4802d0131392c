"""A bisect's per-node error as Google Model Explorer files (`bisect --model-explorer DIR`).

Model Explorer (`pip install ai-edge-model-explorer model-explorer-onnx`) draws an ONNX graph and colours its nodes
by *custom node data*: a JSON file `{graph id: {"results": {node id: {"value": v, "bgColor": ..}}, "thresholds":
[{"value": upper bound, "bgColor": ..}, ..]}}` (its `node_data_builder.ModelNodeData` / `GraphNodeData` /
`NodeDataResult` / `ThresholdItem`). With the ONNX adapter (`model_explorer_onnx`) a graph's id is the ONNX graph's
name (`<main>` when it has none), a node's id is the ONNX node's name (`<node_I>` for the I-th unnamed node), and a
graph input or output is the node `[value] NAME`. Two graphs open side by side (split pane) follow each other
through a *sync navigation* mapping, `{"mappingEntries": [{"leftNodeIds": [..], "rightNodeIds": [..]}]}`, uploaded
in the pane's sync menu ("Upload mapping from computer").

Model Explorer tells the models of one session apart by file name (node data is aimed at a model by its file name,
and a second model of a name already seen gets none) and renames a graph whose id another model already used
(`main_graph` becomes `main_graph (2)`, and node data keyed `main_graph` no longer reaches it). So every graph written
here has its own file name and its own graph name (`<stage>.reference`, `<stage>.<candidate>`): both graphs and all
their node data open in one session, side by side.

For every stage, DIR holds the reference's graph and each candidate's (the graph the candidate ran: cp_debug's export
through its FP16 conversion, the Q/DQ graph given by --int8, or the deployed file of `SPEC@DIR`), and per candidate
three node-data files for each side — max/|ref|max (`rel_max`), the segment's own error run alone on the reference's
inputs (`local_rel_rmse`) and the verdict (`status`: 0 within precision, 1 degraded, 2 diverged, 3 NaN/Inf or a
shape mismatch) — keyed by the node that produces each probe's tensor on that side (the probe naming table: the
report's probes for the reference, the candidate's own map for a deployed file), and the sync mapping between the
two. JSON holds no Inf: a non-finite error is written as 1e30 and painted dark red. Nothing here computes a figure.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence
from urllib.parse import quote

from cp_debug.compare.diff import BROKEN

if TYPE_CHECKING:  # pragma: no cover
    import onnx

NONFINITE = 1e30  # stands for Inf/NaN (strict JSON has neither)
_DARK_RED = "#7f0000"
# (upper bound, colour): green within 1e-3 of the reference's range, … red beyond it
ERROR_THRESHOLDS = ((1e-3, "#1a9850"), (1e-2, "#91cf60"), (1e-1, "#fee08b"), (1.0, "#fc8d59"), (1e29, "#d73027"))
STATUS_THRESHOLDS = ((0, "#1a9850"), (1, "#fee08b"), (2, "#fc8d59"), (3, _DARK_RED))
METRICS = ("rel_max", "local_rel_rmse", "status")
METRIC_NAMES = {"rel_max": "max/|ref|max", "local_rel_rmse": "local error (rel. RMSE, segment alone)",
                "status": "status (0 within precision, 1 degraded, 2 diverged, 3 NaN/Inf/shape)"}


@dataclass(frozen=True)
class GraphView:
    """One side's graph of a stage and the tensor each probe is on that side (probe name -> ONNX tensor)."""

    model: "onnx.ModelProto"
    tensors: Mapping[str, str]
    note: str | None = None  # how this graph relates to what the backend ran, where it is not exactly it


@dataclass(frozen=True)
class StageGraphs:
    stage: str
    reference: GraphView
    candidates: Mapping[str, GraphView]  # by candidate label


def graph_id(model: "onnx.ModelProto") -> str:
    """The graph's id as Model Explorer's ONNX adapter names it."""
    return model.graph.name or "<main>"


def tensor_nodes(model: "onnx.ModelProto") -> dict[str, str]:
    """ONNX tensor -> the id of the Model Explorer node that produces it (a graph input: its `[value]` node)."""
    out = {i.name: f"[value] {i.name}" for i in model.graph.input}
    for i, node in enumerate(model.graph.node):
        for t in node.output:
            if t:
                out[t] = node.name or f"<node_{i}>"
    return out


def safe_name(label: str) -> str:
    """A candidate label as a file name (`ort@/x/deploy` -> `ort@_x_deploy`)."""
    return re.sub(r"[^A-Za-z0-9_.@+-]+", "_", label).strip("_") or "candidate"


def _value(result, metric: str) -> float | None:
    from cp_debug.compare.noise import Outcome

    if metric == "rel_max":
        return result.diff.rel_max if result.diff is not None else None
    if metric == "local_rel_rmse":
        return result.local.rel_rmse if result.local is not None else None
    if result.status in BROKEN:
        return 3.0
    if result.status == "missing":
        return None
    j = result.judgement
    if j is not None:
        return float(j.outcome.severity)
    return float(Outcome.DIVERGED.severity if result.status == "diverged" else 0)


def node_data(report, label: str, view: GraphView, metric: str, probes: Sequence) -> dict:
    """The node data of `metric` for candidate `label` on one side's graph (`ModelNodeData`'s JSON)."""
    by_probe = {r.probe: r for r in report.candidate(label).results}
    nodes = tensor_nodes(view.model)
    outputs = {o.name for o in view.model.graph.output}
    results: dict[str, dict] = {}
    depth: dict[str, int] = {}
    for p in probes:
        r, tensor = by_probe.get(p.name), view.tensors.get(p.name)
        if r is None or tensor is None or tensor not in nodes:
            continue
        v = _value(r, metric)
        if v is None:
            continue
        keys = [nodes[tensor]] + ([f"[value] {tensor}"] if tensor in outputs else [])
        for key in keys:
            if key in results and depth[key] > p.depth:
                continue  # several probes on one tensor: the finest (refined) one
            depth[key] = p.depth
            results[key] = {"value": v} if math.isfinite(v) else {"value": NONFINITE, "bgColor": _DARK_RED}
    table = STATUS_THRESHOLDS if metric == "status" else ERROR_THRESHOLDS
    return {graph_id(view.model): {
        "name": f"{label} vs {report.reference}: {METRIC_NAMES[metric]}", "results": results,
        "thresholds": [{"value": v, "bgColor": c} for v, c in table]}}


def sync_mapping(reference: GraphView, candidate: GraphView, probes: Sequence) -> dict:
    """Model Explorer's sync-navigation mapping, reference (left pane) -> candidate (right pane): the node of each
    probe's tensor on either side, and every node both graphs name alike (cp_debug's own transforms keep names)."""
    left, right = tensor_nodes(reference.model), tensor_nodes(candidate.model)
    pairs: dict[str, str] = {}
    for p in probes:
        a, b = reference.tensors.get(p.name), candidate.tensors.get(p.name)
        if a in left and b in right:
            pairs.setdefault(left[a], right[b])
    right_ids = set(right.values())
    for node in left.values():
        if node in right_ids:
            pairs.setdefault(node, node)
    return {"mappingEntries": [{"leftNodeIds": [a], "rightNodeIds": [b]} for a, b in pairs.items()],
            "showDiffHighlights": True}


def renamed(view: GraphView, name: str) -> GraphView:
    """`view` with its graph named `name` (a copy; node and tensor names kept), so no other graph of the session
    shares its id."""

    from cp_debug.graph.onnx_files import copy_model

    model = copy_model(view.model)
    model.graph.name = name
    return GraphView(model, view.tensors, view.note)


def write_model_explorer(report, stages: Sequence[StageGraphs], out: str | Path) -> Path:
    """Every stage's graphs, node data and sync mapping into folder `out` (each file written whole); returns `out`.
    An index (`index.json`) and a README say which file is which and how to open them."""

    from cp_debug.files import write_json, write_text_atomic
    from cp_debug.graph.onnx_files import save_onnx

    root = Path(out)
    index: dict = {"schema": "cp_debug.model_explorer/2", "reference": report.reference, "stages": []}
    for st in stages:
        probes = [p for p in report.probes if p.stage in (None, st.stage)]
        reference = renamed(st.reference, f"{st.stage}.reference")
        ref_file = root / "reference" / f"{st.stage}.reference.onnx"
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        save_onnx(reference.model, ref_file)
        entry: dict = {"stage": st.stage, "reference": str(ref_file.relative_to(root)),
                       "reference_graph": graph_id(reference.model), "candidates": {}}
        for label, view in st.candidates.items():
            name = safe_name(label)
            view = renamed(view, f"{st.stage}.{name}")
            cand_file = root / name / f"{st.stage}.{name}.onnx"
            cand_file.parent.mkdir(parents=True, exist_ok=True)
            save_onnx(view.model, cand_file)
            files: dict = {"graph": str(cand_file.relative_to(root)), "graph_id": graph_id(view.model),
                           "note": view.note, "reference_data": {}, "candidate_data": {}}
            for metric in METRICS:
                a = write_json(root / "reference" / f"{st.stage}.{name}.{metric}.json",
                               node_data(report, label, reference, metric, probes), parents=True)
                b = write_json(root / name / f"{st.stage}.{metric}.json",
                               node_data(report, label, view, metric, probes))
                files["reference_data"][metric] = str(a.relative_to(root))
                files["candidate_data"][metric] = str(b.relative_to(root))
            sync = write_json(root / name / f"{st.stage}.sync.json", sync_mapping(reference, view, probes))
            files["sync"] = str(sync.relative_to(root))
            files["url_data"] = split_pane_url_data(root, entry, files)
            entry["candidates"][label] = files
        index["stages"].append(entry)
    write_json(root / "index.json", index)
    write_text_atomic(root / "README.md", _readme(index))
    return root


def split_pane_url_data(root: Path, stage: dict, files: dict, metric: str = "rel_max") -> dict:
    """Model Explorer's `?data=` URL parameter (its web app's `models`, `nodeData`, `nodeDataTargets` and `uiState`)
    that opens the reference (left) and the candidate (right) side by side, every layer expanded, each with its
    `metric` node data. Paths are absolute (the server reads them), so the link holds while DIR stays where it is."""
    ref, cand = (root / stage["reference"]).resolve(), (root / files["graph"]).resolve()
    pane = {"deepestExpandedGroupNodeIds": ["___all___"], "selectedNodeId": "", "selectedCollectionLabel": "",
            "widthFraction": 0.5}
    return {"models": [{"url": str(ref)}, {"url": str(cand)}],
            "nodeData": [str((root / files["reference_data"][metric]).resolve()),
                         str((root / files["candidate_data"][metric]).resolve())],
            "nodeDataTargets": [ref.name, cand.name],
            "uiState": {"paneStates": [{**pane, "selectedGraphId": stage["reference_graph"]},
                                       {**pane, "selectedGraphId": files["graph_id"]}]}}


def _readme(index: dict) -> str:
    lines = ["# cp_debug bisect in Google Model Explorer", "",
             "Install the viewer and its ONNX adapter: `pip install ai-edge-model-explorer model-explorer-onnx`.", "",
             "Node data: `*.rel_max.json` (max/|ref|max), `*.local_rel_rmse.json` (the segment run alone on the "
             "reference's inputs), `*.status.json` (0 within precision, 1 degraded, 2 diverged, 3 NaN/Inf or shape "
             "mismatch; 1e30 stands for Inf/NaN). `*.sync.json` maps the reference's nodes (left pane) to the "
             "candidate's (right pane): open both graphs, split the pane, and upload it in the sync menu "
             "(\"Upload mapping from computer\").", ""]
    lines += ["Side by side: start the server (`model-explorer --extensions=model_explorer_onnx --no_open_in_browser`, "
              "port 8080) and open the link of a stage below: the reference left, the candidate right, every layer "
              "expanded, max/|ref|max on both (the link names this folder by its absolute path; `index.json` holds "
              "its `url_data`). Then upload the `*.sync.json` named there in the right pane's Sync menu.", ""]
    for st in index["stages"]:
        for label, f in st["candidates"].items():
            link = "http://localhost:8080/?data=" + quote(json.dumps(f["url_data"]))
            lines += [f"## {st['stage']}: {label} vs {index['reference']}", "", f"[side by side]({link}), sync "
                      f"mapping `{f['sync']}`", "", "One graph at a time:", "", "```",
                      f"model-explorer --extensions=model_explorer_onnx {st['reference']} "
                      f"--node_data_paths={f['reference_data']['rel_max']}",
                      f"model-explorer --extensions=model_explorer_onnx {f['graph']} "
                      f"--node_data_paths={f['candidate_data']['rel_max']}",
                      "```", ""]
            if f.get("note"):
                lines += [f"Note: {f['note']}", ""]
    return "\n".join(lines)


def stage_graphs(engine, report) -> list[StageGraphs]:
    """The graphs of a finished bisect (`bisect.engine.BisectEngine`), per stage: the reference's (cp_debug's export)
    and each candidate's — its deployed file (`SPEC@DIR`, tensors by its own probe map), the --int8 Q/DQ graph, or the
    export through the candidate's FP16 conversion (tensor names kept). An INT8 candidate quantized here shows the
    export it was quantized from (the quantizer's graph is not kept)."""
    from cp_debug.backends.graph_loader import PrepareGraph

    rs = engine.run_state
    opts = engine.opts
    out = []
    for i, st in enumerate(engine.subject.stages):
        model = st.onnx()
        # the report's probe table first: the tensor each probe was compared at in cp_debug's export
        ref_tensors = {**_stage_tensors(st), **{p.name: p.onnx_tensor for p in report.probes
                                                if p.stage == st.name and p.onnx_tensor}}
        cands: dict[str, GraphView] = {}
        for label, spec in engine.candidates:
            found = rs.deployed.get(label)
            if found is not None:
                view = found.stages[i]
                cands[label] = GraphView(view.onnx(), _stage_tensors(view), f"the deployed file {found.files[i]}"
                                         if i < len(found.files) else None)
            elif spec.precision == "int8" and st.qdq_onnx() is not None:
                cands[label] = GraphView(st.qdq_onnx(), ref_tensors)
            elif spec.precision == "fp16":
                prepared = PrepareGraph(model, label, "fp16", keep_fp32_nodes=tuple(opts.keep_fp32), check=False,
                                        expose=False)()
                cands[label] = GraphView(prepared.model, ref_tensors)
            else:
                note = ("the export it was quantized from (INT8 Q/DQ made at run time is not kept)"
                        if spec.precision == "int8" else None)
                cands[label] = GraphView(model, ref_tensors, note)
        out.append(StageGraphs(st.name, GraphView(model, ref_tensors), cands))
    return out


def _stage_tensors(stage) -> dict[str, str]:
    """Probe name -> ONNX tensor of one stage's graph: its probe map's modules, its inputs and outputs (by name and
    by their aliases)."""
    pm = stage.probe_map()
    tensors = dict(pm.tensors) if pm is not None else {}
    for name in list(stage.input_names) + list(stage.output_names):
        tensors.setdefault(name, name)
    for name, alias in (getattr(stage, "output_aliases", None) or {}).items():
        tensors.setdefault(alias, name)
    return tensors

"""Graph differences of a `SPEC@DIR` candidate (issue 33): the nodes the deployed graph has and the reference has
not (or the other way round) are listed, and named as the root cause where the divergence arises in their segment.

The deployed files are the tiny preset's export with one op planted after `pts_backbone.blocks.1.5`'s ReLU (a Clip
that saturates it, a Mul by a constant) or one ReLU dropped, with names intact or every node and tensor renamed.
Without the graph differences the structural mapping calls the next layer (`blocks.1.7`'s conv) the root cause.
"""

from __future__ import annotations

import re

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from cp_debug.bisect.result import BisectReport
from cp_debug.files import json_text
from cp_debug.probes.foreign import map_foreign
from tests.bisect.deployed_files import edited, rename, write_folder

AFTER = "/pts_backbone/blocks.1/blocks.1.5/Relu"
DROPPED = "/pts_backbone/blocks.1/blocks.1.8/Relu"
BETWEEN = ["pts_backbone.blocks.1.5", "pts_backbone.blocks.1.7"]


@pytest.fixture(scope="module")
def tiny_subject():
    """The tiny preset's modules and seed-0 weights on its 40 x 40 grid of 0.64 m pillars, under a name of its
    own."""
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    cfg = get_preset("tiny").with_(name="tiny-40", point_cloud_range=(-12.8, -12.8, -3.0, 12.8, 12.8, 5.0))
    assert cfg.grid_size == (40, 40)
    return centerpoint_subject(cfg)


def _insert(op: str):
    """Plant `op` on the ReLU's output: the ReLU writes a new tensor, the op reads it and writes the old one."""
    def edit(graph: gs.Graph) -> None:
        relu = next(n for n in graph.nodes if n.name == AFTER)
        out = relu.outputs[0]
        raw = gs.Variable(out.name + "_raw", dtype=out.dtype, shape=out.shape)
        relu.outputs = [raw]
        if op == "Clip":  # a ceiling of 0.5 saturates the ReLU's larger outputs
            args = [gs.Constant("clip_min", np.array(0, np.float32)),
                    gs.Constant("clip_max", np.array(0.5, np.float32))]
        else:
            args = [gs.Constant("scale", np.array(0.5, np.float32))]
        graph.nodes.append(gs.Node(op, f"/pts_backbone/blocks.1/{op}_inserted", inputs=[raw, *args], outputs=[out]))
    return edit


def _drop_relu(graph: gs.Graph) -> None:
    relu = next(n for n in graph.nodes if n.name == DROPPED)
    src, out = relu.inputs[0], relu.outputs[0]
    for consumer in list(out.outputs):
        consumer.inputs = [src if t is out else t for t in consumer.inputs]
    relu.outputs = []


def _bisect(subject, folder: Path) -> tuple[BisectReport, str]:
    label = f"ort@{folder}"
    engine = BisectEngine(subject, ("ort", BackendSpec.parse("ort")), [(label, BackendSpec.parse(label))],
                          BisectOptions(noise_floor=False))
    return engine.run(), label


def _squash(text: str) -> str:
    """`text` without whitespace and the panel's borders, so a wrapped line reads as one."""
    return re.sub(r"[\s│]+", "", text)


def _terminal(report: BisectReport) -> str:
    from rich.console import Console

    from cp_debug.report.table import render_table

    console = Console(record=True, width=400, color_system=None)
    render_table(report, console)
    return console.export_text()


@pytest.mark.slow
@pytest.mark.parametrize("names", ["intact", "stripped"])
def test_an_inserted_clip_is_named_as_the_root_cause(tiny_subject, tmp_path, names):
    op = "Clip"
    edits = [_insert(op)] + ([rename] if names == "stripped" else [])
    folder = write_folder(tmp_path / "deploy", tiny_subject, {"pts_backbone_neck_head": edits,
                                                       "pts_voxel_encoder": [rename] if names == "stripped" else []})
    report, label = _bisect(tiny_subject, folder)
    cand = report.candidate(label)
    deployed = onnx.load(str(folder / "pts_backbone_neck_head.onnx"))
    (node,) = cand.root_cause.nodes
    assert node.op_type == op and node.side == "candidate" and [node.before, node.after] == BETWEEN
    assert next(n.op_type for n in deployed.graph.node if n.name == node.node) == op  # the very node of the file
    assert cand.root_cause.probe == BETWEEN[1]  # the probe after it: where the tensors show it
    assert f"{op} {node.node!r}" in cand.root_cause.hint and "only in the deployed graph" in cand.root_cause.hint

    saved = json.loads(json_text(report.to_json()))
    assert saved["graph_differences"][label] == {
        "only_in_candidate": [{"node": node.node, "op_type": op, "stage": "pts_backbone_neck_head",
                               "between": BETWEEN}],
        "only_in_reference": []}
    assert saved["root_cause"][label]["graph_difference"][0]["node"] == node.node
    again = BisectReport.from_json(saved).candidate(label)  # a saved report keeps both
    assert again.root_cause.nodes[0].node == node.node and again.graph_differences == cand.graph_differences

    line = (f"pts_backbone_neck_head.onnx: graph differences: 1 node only in the deployed graph: {op} {node.node!r} "
            f"(between {BETWEEN[0]} and {BETWEEN[1]})")
    assert any(w.endswith(line) for w in saved["warnings"])
    text = _terminal(report)  # the summary panel wraps the warning's line; its start is on one line
    assert f"★ root cause: {op} {node.node!r} (only in the deployed graph), at {BETWEEN[1]}" in text
    # the panel wraps a long label's warning over lines (pytest-xdist's paths are longer): compare without the wrapping
    assert _squash(f"graph differences: 1 node only in the deployed graph: {op} {node.node!r}") in _squash(text)


@pytest.mark.slow
def test_a_dropped_op_is_named_on_the_reference_side(tiny_subject, tmp_path):
    folder = write_folder(tmp_path / "deploy", tiny_subject, {"pts_backbone_neck_head": [_drop_relu, rename],
                                                       "pts_voxel_encoder": [rename]})
    report, label = _bisect(tiny_subject, folder)
    cand = report.candidate(label)
    (node,) = cand.root_cause.nodes
    assert (node.node, node.op_type, node.side) == (DROPPED, "Relu", "reference")
    # the deployed graph has no tensor for blocks.1.8: the segment of the next probe holds the missing ReLU
    assert "pts_backbone.blocks.1.8" in report.settings["deployed"][label]["pts_backbone_neck_head"]["unmapped"]
    assert cand.root_cause.probe == "pts_backbone.blocks.1.10" and "only in the reference" in cand.root_cause.hint
    assert cand.graph_differences.only_in_candidate == ()


def test_an_inserted_mul_is_listed_between_its_probes(tiny_subject):
    st = tiny_subject.stages[1]
    for edits in ([_insert("Mul")], [_insert("Mul"), rename]):
        model = st.onnx()
        for edit in edits:
            model = edited(model, edit)
        found = map_foreign(model, st.onnx(), st.probe_map(), st.trace(), st.name)
        (node,) = found.differences.only_in_candidate
        assert (node.op_type, [node.before, node.after]) == ("Mul", BETWEEN) and not found.differences.only_in_reference
        assert next(n.op_type for n in model.graph.node if n.name == node.node) == "Mul"


def test_a_faithful_copy_differs_in_nothing_and_precision_nodes_are_not_changes(tiny_subject):
    from cp_debug.precision.fp16 import convert_to_fp16

    for st in tiny_subject.stages:
        for model in (st.onnx(), edited(st.onnx(), rename)):
            found = map_foreign(model, st.onnx(), st.probe_map(), st.trace(), st.name)
            assert not found.differences and found.differences.summary() == "every node has its counterpart"
    st = tiny_subject.stages[1]
    half = edited(convert_to_fp16(st.onnx()), rename)
    found = map_foreign(half, st.onnx(), st.probe_map(), st.trace(), st.name)
    casts = found.differences.only_in_candidate
    assert casts and all(n.op_type == "Cast" for n in casts) and not found.differences.computation
    assert found.differences.summary().startswith(f"{len(casts)} Cast only in the deployed graph (the files' precision")


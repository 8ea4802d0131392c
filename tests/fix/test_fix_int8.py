"""`cpdebug fix` through the PTQ path on a planted INT8-hostile layer: the layer is found, the written Q/DQ pair has
no Q/DQ around it (checked on the graph) and still quantizes the others, and ONNX Runtime confirms the target."""

from __future__ import annotations

import json

import pytest

from tests.fix.cli import cpdebug
from tests.fix.planted import INT8_HOSTILE_LAYER, int8_hostile_checkpoint

pytestmark = pytest.mark.slow


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_int8_fix_leaves_the_hostile_layer_out_of_the_qdq_pair(tmp_path):
    import onnx

    ckpt = int8_hostile_checkpoint(tmp_path / "hostile.pth")
    out = tmp_path / "fix"
    proc = cpdebug("--preset", "tiny", "--checkpoint", ckpt, "--backends", "torch,ort-cpu-int8",
                   "--max-rel-rmse", "0.7", "--n", "1", "--calib-n", "1", "--bootstrap", "0", "--search-nodes",
                   f"pts_backbone.blocks.0.0,{INT8_HOSTILE_LAYER}", "--out", out, "--json", "-", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "int8" and doc["search"]["keep"] == [INT8_HOSTILE_LAYER]
    assert doc["set"]["modules"] == [INT8_HOSTILE_LAYER] and INT8_HOSTILE_LAYER not in doc["set"]["quantized"]
    v = doc["verification"]
    assert v["holds"] and float(v["plain"]["worst_rel_rmse"]) > 0.7 >= v["fixed"]["worst_rel_rmse"]
    # AWML's --skip-layers gets the plan's own skips (the neck's deblocks) and the layer found
    skip = (out / "skip_layers.txt").read_text().strip().split(",")
    assert INT8_HOSTILE_LAYER in skip and "pts_neck.deblocks.0.0" in skip

    node = "/pts_backbone/blocks.1/blocks.1.0/Conv"
    assert json.loads((out / "nodes_to_exclude.json").read_text())["pts_backbone_neck_head.onnx"] == [node]
    graph = onnx.load(str(out / "pts_backbone_neck_head.onnx")).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    # the excluded conv reads plain float input and weights; the other backbone convs read DequantizeLinear outputs
    assert all(producer.get(t) != "DequantizeLinear" for t in convs[node].input[:2])
    first = convs["/pts_backbone/blocks.0/blocks.0.0/Conv"]
    assert [producer.get(t) for t in first.input[:2]] == ["DequantizeLinear", "DequantizeLinear"]
    plain_fp32 = onnx.load(str(out / "fp32.pts_backbone_neck_head.onnx")).graph
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in plain_fp32.node)

"""Models no one here tuned cp_debug for (issue 54): every call of a module and every tensor of a tuple / dict /
dataclass output is a probe with its own ONNX tensor, with both exporters; healthy models are within precision at
`--level all`; a dynamo ONNX file's probes are named by module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cp_debug.probes.torch_trace import trace_module
from tests.cli_run import cpdebug
from tests.zoo import models

pytestmark = pytest.mark.slow  # scheduled first under xdist (tests/conftest.py)

ZOO = Path(models.__file__)


def _bisect(tmp_path: Path, build: str, *extra: str) -> dict:
    out = tmp_path / f"{build}.json"
    proc = cpdebug("bisect", "--torch", f"{ZOO}:{build}", "--json", out, *extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


def _rows(report: dict) -> dict[str, dict]:
    (cand,) = report["candidates"]
    return {r["probe"]: r for r in report["results"][cand]}


def _tensors(report: dict) -> dict[str, str | None]:
    return {p["name"]: p["onnx_tensor"] for p in report["probes"]}


def test_the_trace_names_every_call_and_every_tensor_of_a_container_output():
    trace = trace_module(*models.build_resnet())
    assert {"layer1.0.relu#1", "layer1.0.relu#2"} <= set(trace.order) and "layer1.0.relu" not in trace.order
    assert trace.site("layer1.0.relu#2").call == 2 and trace.call_counts["layer1.0.relu"] == 2
    detr = trace_module(*models.build_detr())
    attn = [p for p in detr.order if detr.types[p] == "MultiheadAttention"]
    # (attn_output, weights): both tensors are probes of the call, named by position
    assert "encoder.layers.0.self_attn[0]" in attn and len([p for p in attn if p.endswith("[0]")]) == 6
    assert detr.site("encoder.layers.0.self_attn[0]").path == (0,)
    # the dict a head returns holds its children's own outputs: no second probe for the same value
    assert not [p for p in detr.order if "logits" in p or "boxes" in p]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_healthy_resnet_is_within_precision_at_level_all_each_relu_call_its_own_probe(tmp_path, exporter):
    report = _bisect(tmp_path, "build_resnet", "--backends", "torch,ort", "--level", "all", "--exporter", exporter)
    rows, tensors = _rows(report), _tensors(report)
    assert report["first_divergent"] == {"ort": None}
    for block in ("layer1.0", "layer4.1"):
        one, two = rows[f"{block}.relu#1"], rows[f"{block}.relu#2"]
        assert one["status"] == two["status"] == "ok"
        assert tensors[f"{block}.relu#1"] != tensors[f"{block}.relu#2"]  # each call its own ONNX tensor


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_every_attention_of_a_vit_is_a_probe_with_a_value(tmp_path, exporter):
    report = _bisect(tmp_path, "build_vit", "--backends", "torch,ort", "--level", "all", "--exporter", exporter)
    rows = _rows(report)
    attn = [p for p in rows if p.endswith("self_attention[0]")]
    assert len(attn) == 2 and all(rows[p]["status"] == "ok" for p in attn), {p: rows[p] for p in attn}
    assert report["first_divergent"] == {"ort": None}


def test_a_detr_returning_a_dict_runs_with_outputs_named_by_key_and_its_attention_probed(tmp_path):
    report = _bisect(tmp_path, "build_detr", "--backends", "torch,ort", "--level", "all")
    rows = _rows(report)
    assert {"logits", "boxes"} <= set(rows)
    attn = {p: r for p, r in rows.items() if "attn[0]" in p}
    assert len(attn) == 6
    ok = [p for p, r in attn.items() if r["status"] == "ok"]
    # the first decoder layer's self-attention runs on the constant queries: the exporter folds it away, said so
    assert len(ok) == 5 and "decoder.layers.0.self_attn[0]" not in ok
    assert report["first_divergent"] == {"ort": None}


def test_a_text_model_returning_a_dataclass_runs_and_its_hand_written_attention_is_probed(tmp_path):
    report = _bisect(tmp_path, "build_text", "--backends", "torch,ort", "--level", "all")
    rows = _rows(report)
    assert {"logits", "hidden"} <= set(rows)
    for p in ("blocks.0.attn.q_proj", "blocks.0.attn.o_proj", "blocks.1.attn"):
        assert rows[p]["status"] == "ok", rows[p]
    ops = {p["name"]: p["op_type"] for p in report["probes"]}
    assert ops["blocks.0.attn.q_proj"] == "Linear"  # not the bias Add that ends it in the graph


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_module_called_twice_maps_each_call_to_its_own_tensor(tmp_path, exporter):
    report = _bisect(tmp_path, "build_twice", "--backends", "torch,ort", "--level", "all", "--exporter", exporter)
    rows, tensors = _rows(report), _tensors(report)
    assert rows["shared#1"]["status"] == rows["shared#2"]["status"] == "ok"
    assert tensors["shared#1"] != tensors["shared#2"]


def test_a_vit_at_block_level_gives_each_encoder_layer_its_probe():
    from cp_debug.bisect.subjects.subject import Stage

    module, example = models.build_vit()
    stage = Stage("vit", ("x",), ("output0",), module=module, example_inputs=example)
    probes = stage.probes_at("block")
    assert ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1", "encoder.layers"] == \
        [p for p in probes if p.startswith("encoder.layers")]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_a_dynamo_onnx_file_names_its_probes_by_module_and_op(tmp_path):
    module, (x,) = models.build_detr()
    path = tmp_path / "detr.onnx"
    torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["image"], output_names=["logits", "boxes"])
    np.savez(tmp_path / "x.npz", image=x.numpy())
    out = tmp_path / "r.json"
    proc = cpdebug("bisect", "--onnx", path, "--inputs", tmp_path / "x.npz", "--backends", "ort,ort", "--json", out)
    assert proc.returncode == 0, proc.stdout[-2000:]
    names = [p["name"] for p in json.loads(out.read_text())["probes"]]
    assert "encoder.layers.0.self_attn/Softmax" in names and "backbone.1/Conv" in names
    assert not [n for n in names if n.startswith(("val_", "getitem"))]

"""An ONNX pair exported the way tier4/autoware-ml exports it, as a `SPEC@DIR` candidate (issue 34).

The model is autoware-ml's module tree (tests/models/centerpoint/autoware_ml_replica.py) built from a real config
composition (its base.yaml and T4 dataset files under cp_debug_tiny.yaml), saved as the Lightning checkpoint its
trainer writes and exported as its deploy step exports it: torch.onnx.export(dynamo=True) at opset 21 (autoware-ml's
default exporter) and, as its CenterPoint base.yaml asks, the TorchScript exporter at opset 17 without constant
folding. cp_debug loads the same YAML and checkpoint into its own modules (the reference) and maps the file's
nodes — named `node_Conv_12` by the dynamo exporter, scoped `backbone.blocks.0.0.norm` by autoware-ml's module tree
— onto its probe names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch

from cp_debug.backends.spec import BackendSpec
from cp_debug.bisect.subjects.deployed import deployed_stages
from cp_debug.bisect.engine import BisectEngine, BisectOptions
from tests.bisect.deployed_files import edited

pytestmark = pytest.mark.needs("omegaconf", "onnxscript")  # onnxscript: torch.onnx.export(dynamo=True)

TINY = (Path(__file__).parents[1] / "models" / "centerpoint" / "autoware_ml_configs" / "tasks" / "detection3d"
        / "centerpoint" / "cp_debug_tiny.yaml")
FILES = ("pts_voxel_encoder_centerpoint.onnx", "pts_backbone_neck_head_centerpoint.onnx")
PLANTED_SCOPE = "backbone.blocks.1.1.norm"  # autoware-ml's name; the dynamo exporter folds the BN into its conv
PLANTED_LAYER = ("pts_backbone.blocks.1.3", "pts_backbone.blocks.1.4")  # the same conv and BN in cp_debug's tree


def _scopes(node) -> list[str]:
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            return ast.literal_eval(p.value)
    return []


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """(the YAML's checkpoint, the dynamo pair's folder, the TorchScript pair's folder), as autoware-ml writes them."""
    from cp_debug.models.centerpoint.config_yaml import _resolved, compose_yaml
    from tests.models.centerpoint.autoware_ml_replica import (CenterPointDetectionModel, export_pair,
                                                              save_lightning_checkpoint)

    root = tmp_path_factory.mktemp("autoware_ml")
    cfg = compose_yaml(TINY)
    model = CenterPointDetectionModel(_resolved(cfg, "model", TINY.stem))
    ckpt = save_lightning_checkpoint(model, root / "best.ckpt")
    gen = torch.Generator().manual_seed(0)
    feats, spatial = torch.randn(400, 32, 11, generator=gen), torch.randn(1, 32, 32, 32, generator=gen).relu()
    onnx_cfg = _resolved(cfg, "deploy.onnx", TINY.stem)
    export_pair(model, onnx_cfg, root / "dynamo", feats, spatial)
    legacy = {**onnx_cfg, "dynamo": False, "opset_version": 17, "do_constant_folding": False}  # base.yaml's
    export_pair(model, legacy, root / "torchscript", feats, spatial)
    return ckpt, root / "dynamo", root / "torchscript"


@pytest.fixture(scope="module")
def subject(deployed):
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    return centerpoint_subject(str(TINY), checkpoint=deployed[0], trace_side=32)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_the_pair_is_what_autoware_ml_writes(deployed):
    _, folder, _ = deployed
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    model = onnx.load(str(folder / FILES[1]))
    assert {o.domain: o.version for o in model.opset_import}[""] == 21
    scopes = {s for n in model.graph.node for s in _scopes(n)}
    assert PLANTED_SCOPE in scopes and "bbox_head.heatmap.0.norm" in scopes  # autoware-ml's module tree
    assert not any(s.startswith("pts_") for s in scopes)  # none of cp_debug's names
    assert [o.name for o in model.graph.output] == ["heatmap", "reg", "height", "dim", "rot", "vel"]


def _planter(model: onnx.ModelProto):
    """An edit scaling the weights of the Conv that carries autoware-ml's scope PLANTED_SCOPE (graphsurgeon keeps no
    node metadata, so the node is found in the proto first)."""
    name = next(n.name for n in model.graph.node if n.op_type == "Conv" and PLANTED_SCOPE in _scopes(n))

    def plant(graph: gs.Graph) -> None:
        conv = next(n for n in graph.nodes if n.name == name)
        conv.inputs[1].values = conv.inputs[1].values * np.float32(1.5)

    return plant


def _fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    from cp_debug.precision.fp16 import convert_to_fp16

    return convert_to_fp16(model, keep_io_types=True)  # explicit FP16 inside, FP32 at the inputs and outputs


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow  # one dynamo export (about 20 s on two cores) and a four-candidate bisect
def test_the_dynamo_pair_maps_its_probes_and_bisects(deployed, subject, tmp_path):
    _, folder, _ = deployed
    planted, half = tmp_path / "planted", tmp_path / "fp16"
    for out in (planted, half):
        out.mkdir()
        for name in FILES:
            model = onnx.load(str(folder / name))
            if out == half:
                model = _fp16(model)
            elif name == FILES[1]:
                model = edited(model, _planter(model))
            onnx.save(model, out / name)
    labels = [f"ort@{folder}", f"ort-cpu-fp16@{folder}", f"ort@{planted}", f"ort@{half}"]
    engine = BisectEngine(subject, ("torch", BackendSpec.parse("torch")),
                          [(label, BackendSpec.parse(label)) for label in labels], BisectOptions(noise_floor=False))
    report = engine.run()
    same, converted, fault, explicit = report.candidates
    mapped = [w for w in report.warnings if str(folder) in w and "probes mapped" in w]
    assert any("pts_voxel_encoder_centerpoint.onnx: 2 of 2 probes mapped" in w for w in mapped)
    assert any("pts_backbone_neck_head_centerpoint.onnx: 13 of 13 probes mapped" in w and "by scope" in w
               for w in mapped)
    # the same weights in another module tree, exported by another exporter: every probe compared, none diverges
    assert same.first_divergent is None and {r.status for r in same.results} == {"ok"}
    assert len(same.results) >= 15
    for cand in (converted, explicit):  # FP16 (cp_debug's conversion, or held by the file): within precision
        assert cand.first_divergent is None, cand.results
    held = [w for w in report.warnings if str(half) in w]
    assert any("the deployed files hold fp16" in w for w in held)
    assert any("13 of 13 probes mapped" in w and "by scope" in w for w in held)  # the FP16 file kept its scopes
    # a fault planted in the dynamo-named file is found under cp_debug's module names
    assert fault.first_divergent in PLANTED_LAYER and fault.path[0] == "pts_backbone.blocks.1"
    assert fault.root_cause is not None and fault.root_cause.probe in PLANTED_LAYER
    assert {r.probe: r.status for r in fault.results}["pts_backbone.blocks.0"] == "ok"


def test_the_torchscript_pair_of_the_real_base_config_maps_by_scope(deployed, subject):
    # autoware-ml's CenterPoint base.yaml exports with dynamo: false, opset 17, do_constant_folding: false
    _, _, folder = deployed
    assert {o.domain: o.version for o in onnx.load(str(folder / FILES[1])).opset_import}[""] == 17
    spec = BackendSpec.parse(f"ort@{folder}")
    probes = {i: list(st.probe_map().tensors) for i, st in enumerate(subject.stages)}
    stages = deployed_stages(spec, subject, probes)
    assert [p.name for p in stages.files] == list(FILES)
    encoder, backbone = (st.probe_map() for st in stages.stages)
    # the backbone/neck/head: every module cp_debug's own export maps, found by autoware-ml's scope names (and the
    # convs too: without constant folding the file keeps its BatchNormalization nodes)
    assert set(probes[1]) <= set(backbone.tensors) and {stages.how[1][q] for q in probes[1]} == {"scope"}
    # the PFN layers map; the first layer's BN normalises (N * P, C) in autoware-ml, (N, C, P) in cp_debug: no tensor
    # of the file has its shape, so it is reported missing with the reason, never compared
    assert {"pts_voxel_encoder.pfn_layers.0", "pts_voxel_encoder.pfn_layers.1"} <= set(encoder.tensors)
    assert set(probes[0]) - set(encoder.tensors) <= {"pts_voxel_encoder.pfn_layers.0.norm"}

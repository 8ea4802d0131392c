"""Exported ONNX files have AWML's interface and ONNX Runtime reproduces PyTorch on them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cp_debug.models.centerpoint.model import HEAD_OUTPUTS, BackboneNeckHeadStage, VoxelEncoderStage
from cp_debug.recipes.centerpoint.export import example_stage_inputs, export_onnx, read_metadata


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_interface(onnx_dir, tiny_cfg):
    enc = onnx.load(onnx_dir / "pts_voxel_encoder.onnx")
    bb = onnx.load(onnx_dir / "pts_backbone_neck_head.onnx")
    assert [i.name for i in enc.graph.input] == ["input_features"]
    assert [o.name for o in enc.graph.output] == ["pillar_features"]
    assert _dims(enc.graph.input[0]) == ["num_voxels", "num_max_points", 10]
    assert _dims(enc.graph.output[0])[0] == "num_voxels"
    assert [i.name for i in bb.graph.input] == ["spatial_features"]
    assert [o.name for o in bb.graph.output] == list(HEAD_OUTPUTS)
    assert _dims(bb.graph.input[0]) == ["batch_size", 32, "height", "width"]
    for model in (enc, bb):
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    ops = {n.op_type for n in bb.graph.node}
    assert not ops & {"Sigmoid", "Exp", "Atan"}  # raw outputs
    # module names survive in node names (names are the join key)
    assert any("pts_backbone/blocks.1" in n.name for n in bb.graph.node)
    assert any("pfn_layers.0" in n.name for n in enc.graph.node)
    meta = read_metadata(onnx_dir / "pts_backbone_neck_head.onnx")
    assert meta["cp_debug.preset"] == "tiny" and meta["cp_debug.rot_y_axis_reference"] == "false"
    assert not list(onnx_dir.glob("*.tmp"))


def test_export_leaves_the_model_in_eval_mode(onnx_dir, tiny_model):
    assert not any(m.training for m in tiny_model.modules())


def test_ort_reproduces_torch_head_maps(onnx_dir, tiny_model, tiny_cfg, scene, record_property):
    feats, spatial = example_stage_inputs(tiny_model, tiny_cfg, scene.points)
    with torch.no_grad():
        ref_pillars = VoxelEncoderStage(tiny_model)(feats).numpy()
        ref_head = [t.numpy() for t in BackboneNeckHeadStage(tiny_model)(spatial)]
    enc = ort.InferenceSession(str(onnx_dir / "pts_voxel_encoder.onnx"), providers=["CPUExecutionProvider"])
    bb = ort.InferenceSession(str(onnx_dir / "pts_backbone_neck_head.onnx"), providers=["CPUExecutionProvider"])
    (pillars,) = enc.run(None, {"input_features": feats.numpy()})
    assert pillars.shape == (feats.shape[0], 1, 32)
    assert np.abs(pillars - ref_pillars).max() < 1e-4
    head = bb.run(None, {"spatial_features": spatial.numpy()})
    w, h = tiny_cfg.head_size
    for name, got, ref in zip(HEAD_OUTPUTS, head, ref_head):
        assert got.shape == ref.shape == (1, tiny_cfg.head_channels()[name], h, w)
        diff = float(np.abs(got - ref).max())
        record_property(f"max_abs_diff_{name}", diff)
        print(f"{name}: max |ort - torch| = {diff:.3g} (|ref| max {np.abs(ref).max():.3g})")
        assert diff < 1e-3, name
    # the maps are not degenerate: a random-weight model still varies and scores some cells above 0.1
    heat = 1 / (1 + np.exp(-ref_head[0]))
    assert ref_head[0].std() > 0.1 and (heat > 0.1).sum() > 10


def test_dynamic_axes(onnx_dir, tiny_model, tiny_cfg):
    enc = ort.InferenceSession(str(onnx_dir / "pts_voxel_encoder.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(37, 20, 10)).astype(np.float32)
    (out,) = enc.run(None, {"input_features": x})
    with torch.no_grad():
        ref = VoxelEncoderStage(tiny_model)(torch.from_numpy(x)).numpy()
    assert out.shape == (37, 1, 32)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    bb = ort.InferenceSession(str(onnx_dir / "pts_backbone_neck_head.onnx"), providers=["CPUExecutionProvider"])
    s = np.abs(np.random.default_rng(1).normal(size=(2, 32, 64, 96))).astype(np.float32)
    outs = bb.run(None, {"spatial_features": s})
    assert outs[0].shape == (2, 5, 32, 48)


def test_rot_y_axis_reference_export(tmp_path, tiny_model, tiny_cfg, scene):
    res = export_onnx(tiny_model, tiny_cfg, tmp_path, rot_y_axis_reference=True, sample_points=scene.points)
    assert read_metadata(res.backbone)["cp_debug.rot_y_axis_reference"] == "true"
    _, spatial = example_stage_inputs(tiny_model, tiny_cfg, scene.points)
    bb = ort.InferenceSession(str(res.backbone), providers=["CPUExecutionProvider"])
    got = dict(zip(HEAD_OUTPUTS, bb.run(None, {"spatial_features": spatial.numpy()})))
    with torch.no_grad():
        ref = dict(zip(HEAD_OUTPUTS, (t.numpy() for t in BackboneNeckHeadStage(tiny_model)(spatial))))
    np.testing.assert_allclose(got["dim"], ref["dim"][:, [1, 0, 2]], atol=1e-3)
    np.testing.assert_allclose(got["rot"][:, 0], -ref["rot"][:, 1], atol=1e-3)
    np.testing.assert_allclose(got["rot"][:, 1], -ref["rot"][:, 0], atol=1e-3)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.parametrize("base", ["awml-760", "awml-j6gen2"])
def test_other_module_variants_on_a_small_grid(tmp_path, base):
    """The 760 neck (Conv k1, ConvT k2, ConvT k4; full-resolution heads) and the 11-channel J6Gen2 encoder,
    on an 80 x 80 grid of the preset's pillars (the backbone's strides 1, 2, 2 leave 20 x 20 at the deepest):
    export, ONNX Runtime and the decoded boxes agree with PyTorch."""
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.models.centerpoint.model import build_model
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.lidar.compare_detections import compare_detections
    from cp_debug.recipes.centerpoint.pipeline import run_pipeline
    from cp_debug.recipes.centerpoint.stage_runners import ort_stage_runners, torch_stage_runners

    full = get_preset(base)
    half = 40 * full.voxel_size[0]
    cfg = full.with_(name=f"small-{base}", point_cloud_range=(-half, -half, -3.0, half, half, 5.0), max_voxels=8000)
    assert cfg.grid_size == (80, 80)
    model = build_model(cfg, seed=2)
    pts = synthetic_scene(2, cfg, n_ground=4000, n_clutter=1000).points
    res = export_onnx(model, cfg, tmp_path, sample_points=pts)
    assert _dims(onnx.load(res.voxel_encoder).graph.input[0])[2] == cfg.decorated_channels
    a = run_pipeline(cfg, pts, *torch_stage_runners(model))
    b = run_pipeline(cfg, pts, *ort_stage_runners(tmp_path))
    assert a.head["heatmap"].shape == (1, 5, *reversed(cfg.head_size))
    for name in HEAD_OUTPUTS:
        assert np.abs(a.head[name] - b.head[name]).max() < 1e-3, name
    diff = compare_detections(a.detections, b.detections, max_dist=0.5)
    assert len(a.detections) > 0 and diff.all_matched and diff.max_centre_dist < 1e-3

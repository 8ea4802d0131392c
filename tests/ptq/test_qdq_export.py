"""Q/DQ ONNX: passes onnx.checker, runs in ONNX Runtime, ConvTranspose FP32 by default, agrees with fake-quant."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cp_debug.recipes.centerpoint.ptq.int8_error import ort_outputs
from cp_debug.recipes.centerpoint.ptq.scenes import head_outputs
from cp_debug.compare.pooled import rel_rmse


@pytest.fixture(scope="module")
def exported(tiny_cfg, tiny_ptq, tmp_path_factory):
    from cp_debug.recipes.centerpoint.ptq.qdq_files import export_qdq

    return export_qdq(tiny_ptq.model, tiny_cfg, tmp_path_factory.mktemp("qdq"))


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_qdq_structure_is_what_tensorrt_takes(exported, tiny_ptq):
    bb = exported.backbone
    assert bb.path.name == "pts_backbone_neck_head.onnx"
    assert exported.voxel_encoder.path.name == "pts_voxel_encoder.onnx"
    assert len(bb.quantized_convs) == 29 and bb.quantize_nodes == bb.dequantize_nodes == 58
    assert bb.per_axis_weights == 28  # the height head (1 output channel) has a one-element scale
    assert sorted(bb.float_convs) == sorted(f"/pts_neck/deblocks.{i}/deblocks.{i}.0/{op}" for i, op in
                                            ((0, "Conv"), (1, "Conv"), (2, "ConvTranspose")))
    assert exported.voxel_encoder.quantize_nodes == 0  # the PFN stays FP32, as AWML keeps it
    m = onnx.load(str(bb.path))
    assert [i.name for i in m.graph.input] == ["spatial_features"]
    assert [o.name for o in m.graph.output] == ["heatmap", "reg", "height", "dim", "rot", "vel"]
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node if n.op_type == "Constant"}
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    val = lambda k: inits.get(k, consts.get(k))  # noqa: E731
    conv = tiny_ptq.model.get_submodule("pts_backbone.blocks.1.3")
    want = conv._weight_quantizer.amax.reshape(-1).numpy() / 127
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and "blocks.1.3/_weight_quantizer" in n.name]
    assert len(qs) == 1
    np.testing.assert_allclose(val(qs[0].input[1]), want, rtol=1e-6)
    assert val(qs[0].input[2]).dtype == np.int8 and not val(qs[0].input[2]).any()


def test_ort_runs_it_and_agrees_with_fake_quant_to_int8_rounding(exported, tiny_ptq, tiny_spatial):
    spatial = tiny_spatial[0]
    fp = head_outputs(tiny_ptq.fused_fp32, spatial)
    fq = head_outputs(tiny_ptq.model, spatial)
    plain = ort_outputs(exported.backbone.path, [spatial], optimize=False)[0]
    deployed = ort_outputs(exported.backbone.path, [spatial], optimize=True)[0]
    for name in fp:
        int8_err = rel_rmse([fp[name]], [fq[name]])
        assert int8_err > 1e-3, name  # quantization did something
        # torch and ORT differ only where a value sits on a rounding tie: far below the INT8 error itself
        assert rel_rmse([fq[name]], [plain[name]]) < 0.35 * int8_err, name
        assert rel_rmse([fp[name]], [deployed[name]]) < 3 * int8_err, name


def test_one_quantized_layer_matches_ort_within_a_step(tiny_cfg, tiny_ptq, tiny_spatial, tmp_path):
    """Only the heatmap's last conv in INT8: torch fake-quant and ORT's Q/DQ agree within two output steps."""
    from cp_debug.recipes.centerpoint.ptq.qdq_files import export_qdq
    from cp_debug.quant.quantizers import only_quantized

    layer = "pts_bbox_head.task_heads.0.heatmap.1"
    with only_quantized(tiny_ptq.model, [layer]):
        ex = export_qdq(tiny_ptq.model, tiny_cfg, tmp_path)
        fq = head_outputs(tiny_ptq.model, tiny_spatial[0])["heatmap"]
    assert ex.backbone.quantized_convs == ("/pts_bbox_head/task_heads.0/heatmap/heatmap.1/Conv",)
    got = ort_outputs(ex.backbone.path, tiny_spatial, optimize=False)[0]["heatmap"]
    conv = tiny_ptq.model.get_submodule(layer)
    s_in = float(conv._input_quantizer.amax) / 127
    s_w = conv._weight_quantizer.amax.reshape(-1) / 127
    step = float((s_in * s_w).max())  # one unit of the int32 accumulator, in output units
    assert np.abs(fq - got).max() <= 2 * step * conv.weight[0].numel()


def test_awml_variant_quantizes_the_convtranspose_per_tensor(tiny_cfg, tiny_fp32, tmp_path):
    from cp_debug.recipes.centerpoint.ptq.quantize import quantize_centerpoint
    from cp_debug.data.frames import calibration, points_of
    from cp_debug.recipes.centerpoint.ptq.qdq_files import export_qdq

    run = quantize_centerpoint(tiny_fp32, tiny_cfg, points_of(calibration(tiny_cfg, 1), tiny_cfg), 1, method="max",
                               convtranspose="per-tensor")
    names = run.plan.names
    assert "pts_neck.deblocks.2.0" in names and not any(n.startswith("pts_backbone.blocks.0.") for n in names)
    ex = export_qdq(run.model, tiny_cfg, tmp_path)
    assert "/pts_neck/deblocks.2/deblocks.2.0/ConvTranspose" in ex.backbone.quantized_convs
    assert len(ex.backbone.quantized_convs) == len(names) == 28
    assert ex.backbone.per_axis_weights == 26  # all but the ConvTranspose (per-tensor) and the 1-channel height head
    out = ort_outputs(ex.backbone.path, [np.zeros((1, 32, *tiny_cfg.grid_size[::-1]), np.float32)])[0]
    assert all(np.isfinite(v).all() for v in out.values())

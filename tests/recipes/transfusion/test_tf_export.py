"""`cpdebug export --recipe transfusion` writes Autoware's one transfusion.onnx, which ONNX Runtime runs as torch does
at any voxel count (the dynamic voxels_num axis)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("tf-onnx")
    res = cpdebug("export", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--out", out, "-q")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[0].endswith("transfusion.onnx")
    return out / "transfusion.onnx"


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_autoware_interface(exported):
    model = onnx.load(str(exported))
    ins = {i.name: i for i in model.graph.input}
    outs = {o.name: o for o in model.graph.output}
    assert list(ins) == ["voxels", "num_points", "coors"]
    assert _dims(ins["voxels"]) == ["voxels_num", 20, 5] and _dims(ins["coors"]) == ["voxels_num", 4]
    assert _dims(ins["num_points"]) == ["voxels_num"]
    assert ins["num_points"].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert list(outs) == ["cls_score0", "bbox_pred0", "dir_cls_pred0"]
    assert _dims(outs["cls_score0"]) == [1, 5, 40] and _dims(outs["bbox_pred0"]) == [1, 8, 40]
    assert _dims(outs["dir_cls_pred0"]) == [1, 2, 40]
    ops = [n.op_type for n in model.graph.node]
    assert "ScatterND" in ops  # the scatter is in the one graph
    (topk,) = [n for n in model.graph.node if n.op_type == "TopK"]
    k = next(i for i in model.graph.initializer if i.name == topk.input[1])
    assert onnx.numpy_helper.to_array(k).tolist() == [40]  # fix_graph.py's constant K
    assert not list(exported.parent.glob(".*"))


@pytest.mark.parametrize("voxels", [300, 700])
def test_ort_matches_torch(exported, voxels):
    import onnxruntime as ort
    import torch

    from cp_debug.models.transfusion.model import build_model
    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.recipes.transfusion.export import DEPLOY_INPUTS, deploy_module, example_voxels

    cfg = get_preset("transfusion-tiny")
    feed = example_voxels(cfg, max_voxels=voxels)
    assert feed[0].shape[0] == voxels
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: t.numpy() for n, t in zip(DEPLOY_INPUTS, feed)})
    with torch.no_grad():
        want = deploy_module(build_model(cfg, 0))(*feed)  # the CLI's default weights: seed 0
        full = build_model(cfg, 0)(*feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-3, atol=1e-4)
    # the outputs are AWML's head outputs as mmdeploy's patch combines them
    cls = full["query_heatmap_score"] * full["heatmap"].sigmoid()
    np.testing.assert_allclose(got[0], cls.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got[1][:, :2], full["center"].numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got[2], full["rot"].numpy(), rtol=1e-3, atol=1e-4)


def test_refusals(tmp_path):
    res = cpdebug("export", "--recipe", "transfusion", "--preset", "tiny", "--out", tmp_path)
    assert res.returncode == 2 and "unknown TransFusion preset 'tiny'" in res.stderr
    res = cpdebug("export", "--recipe", "pointpillars", "--out", tmp_path)
    assert res.returncode == 2 and "unknown recipe" in res.stderr

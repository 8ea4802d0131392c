"""The staged pipeline: ORT for both stages gives PyTorch's boxes; every boundary is captured."""

from __future__ import annotations

import numpy as np
import pytest

from cp_debug.errors import BadInputError, CpDebugError
from cp_debug.lidar.compare_detections import compare_detections
from cp_debug.recipes.centerpoint.pipeline import STEPS, make_front, run_pipeline
from cp_debug.recipes.centerpoint.stage_runners import (
    OrtStageRunner,
    ort_stage_runners,
    torch_stage_runner,
    torch_stage_runners,
)


@pytest.fixture(scope="module")
def torch_result(tiny_cfg, tiny_model, scene):
    return run_pipeline(tiny_cfg, scene.points, *torch_stage_runners(tiny_model))


def test_ort_pipeline_matches_torch(tiny_cfg, onnx_dir, scene, torch_result):
    ort_result = run_pipeline(tiny_cfg, scene.points, *ort_stage_runners(onnx_dir))
    a, b = torch_result, ort_result
    assert len(a.detections) > 5
    diff = compare_detections(a.detections, b.detections, max_dist=0.5)
    print(diff.summary())
    assert diff.all_matched and diff.num_matched == len(a.detections)
    assert diff.max_centre_dist < 1e-3 and diff.max_score_diff < 1e-4
    assert diff.max_size_diff < 1e-3 and diff.max_yaw_diff < 1e-3
    # the torch glue gives both backends identical inputs
    np.testing.assert_array_equal(a.input_features, b.input_features)
    assert np.abs(a.pillar_features - b.pillar_features).max() < 1e-4
    for name in a.head:
        assert np.abs(a.head[name] - b.head[name]).max() < 1e-3


def test_mixed_backends(tiny_cfg, tiny_model, onnx_dir, scene, torch_result):
    enc, _ = ort_stage_runners(onnx_dir)
    _, bb = torch_stage_runners(tiny_model)
    res = run_pipeline(tiny_cfg, scene.points, enc, bb, capture=False)
    assert res.input_features is None and res.voxels is None
    assert compare_detections(torch_result.detections, res.detections).all_matched


def test_boundaries_and_timings(torch_result, tiny_cfg):
    r = torch_result
    n = r.voxels.num_voxels
    b = r.boundaries()
    assert list(b) == ["voxels", "num_points", "coors", "input_features", "pillar_features", "spatial_features",
                       "heatmap", "reg", "height", "dim", "rot", "vel"]
    assert b["input_features"].shape == (n, 32, 10)
    assert b["pillar_features"].shape == (n, 1, 32)
    nx, ny = tiny_cfg.grid_size
    assert b["spatial_features"].shape == (1, 32, ny, nx)
    assert list(r.timings) == list(STEPS)
    assert all(t >= 0 for t in r.timings.values())


def test_runner_returning_wrong_shape_is_caught(tiny_cfg, tiny_model, scene):
    """The (N, 32, C) vs (N, 1, 32) mix-up of AWML's issue tracker gives a clear error, not garbage."""

    class Raw:
        def infer(self, feed):
            return {"pillar_features": feed["input_features"]}

    _, bb = torch_stage_runners(tiny_model)
    with pytest.raises(BadInputError, match=r"pillar_features of shape .* expected"):
        run_pipeline(tiny_cfg, scene.points, Raw(), bb)


def test_runner_contract(tiny_model, onnx_dir, tiny_cfg):
    from cp_debug.models.centerpoint.model import VoxelEncoderStage

    x = np.zeros((3, 32, 10), np.float32)
    for runner in (
        torch_stage_runner(VoxelEncoderStage(tiny_model), ["input_features"], ["pillar_features"]),
        OrtStageRunner(onnx_dir / "pts_voxel_encoder.onnx"),
    ):
        with pytest.raises(CpDebugError, match="not active"):
            runner.infer({"input_features": x})
        with runner:
            out = runner.infer({"input_features": x})
            assert set(out) == {"pillar_features"} and out["pillar_features"].shape == (3, 1, 32)
            with pytest.raises(BadInputError, match="input_features"):
                runner.infer({"wrong": x})
        assert not runner.is_active
    with OrtStageRunner(onnx_dir / "pts_voxel_encoder.onnx") as r:
        with pytest.raises(BadInputError, match="another preset"):
            r.infer({"input_features": np.zeros((3, 32, 11), np.float32)})
    with pytest.raises(BadInputError, match="does not exist"):
        OrtStageRunner(onnx_dir / "missing.onnx").activate()


def test_points_outside_range(tiny_cfg, tiny_model):
    pts = np.full((50, 5), 500.0, np.float32)
    with pytest.raises(BadInputError, match="point_cloud_range"):
        run_pipeline(tiny_cfg, pts, *torch_stage_runners(tiny_model))


def test_a_front_made_once_gives_every_run_its_values(tiny_cfg, tiny_model, onnx_dir, scene, torch_result):
    """The scan's voxels and features made once (`make_front`) and given to a torch and an ONNX Runtime run: each
    run's boundaries and boxes are those of making them itself; the front is left as it was; a front made for
    another device or voxel cap is refused."""
    front = make_front(tiny_cfg, scene.points, "cpu")
    kept = front.features.clone()
    with_front = run_pipeline(tiny_cfg, scene.points, *torch_stage_runners(tiny_model), front=front)
    plain = torch_result.boundaries()
    for name, value in with_front.boundaries().items():
        np.testing.assert_array_equal(value, plain[name], err_msg=name)
    assert "voxelize" not in with_front.timings and "get_input_features" not in with_front.timings
    ort_plain = run_pipeline(tiny_cfg, scene.points, *ort_stage_runners(onnx_dir))
    ort_front = run_pipeline(tiny_cfg, None, *ort_stage_runners(onnx_dir), front=front)
    for name, value in ort_front.boundaries().items():
        np.testing.assert_array_equal(value, ort_plain.boundaries()[name], err_msg=name)
    for field in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(getattr(ort_front.detections, field), getattr(ort_plain.detections, field))
    assert len(ort_plain.detections) > 5
    assert bool((front.features == kept).all())
    with pytest.raises(ValueError, match="front made on cpu"):
        run_pipeline(tiny_cfg, scene.points, *torch_stage_runners(tiny_model), front=front, max_voxels=7)
    with pytest.raises(BadInputError, match="point_cloud_range"):
        make_front(tiny_cfg, np.full((50, 5), 500.0, np.float32))

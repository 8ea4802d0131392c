"""The resident pipeline (torch tensors from the points to the boxes, runners fed through `infer_device`) gives the
numpy path's numbers bit for bit: run here with torch CPU tensors, the same code a CUDA device runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cp_debug.backends.spec import BackendSpec
from cp_debug.recipes.centerpoint.eval.backend_pipeline import BackendPipeline
from cp_debug.recipes.centerpoint.pipeline import run_pipeline


def _same(a, b) -> None:
    ba, bb = a.boundaries(), b.boundaries()
    assert list(ba) == list(bb)
    for name in ba:
        np.testing.assert_array_equal(ba[name], bb[name], err_msg=name)
    for field in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(getattr(a.detections, field), getattr(b.detections, field))


@pytest.mark.parametrize("label", ["torch", "ort-cpu-fp16"])
def test_resident_run_equals_the_numpy_path(label, tiny_cfg, tiny_model, onnx_dir, scene):
    with BackendPipeline(label, BackendSpec.parse(label), tiny_cfg, tiny_model, onnx_dir=onnx_dir) as pipe:
        plain = run_pipeline(tiny_cfg, scene.points, pipe.encoder, pipe.backbone)
        kept = run_pipeline(tiny_cfg, scene.points, pipe.encoder, pipe.backbone, resident=True, on_device=True)
    assert len(plain.detections) > 0
    assert isinstance(plain.spatial_features, np.ndarray)
    assert all(isinstance(v, torch.Tensor) for v in (kept.input_features, kept.pillar_features,
                                                      kept.spatial_features, *kept.head.values()))
    host = kept.host()  # what a resident run returns unless asked to keep its tensors
    assert isinstance(host.spatial_features, np.ndarray) and isinstance(host.head["heatmap"], np.ndarray)
    _same(plain, kept)
    _same(plain, host)
    assert list(kept.timings) == list(plain.timings)


def test_a_runner_without_tensors_is_fed_numpy_in_a_resident_run(tiny_cfg, tiny_model, onnx_dir, scene):
    """A runner that does not declare `device_tensors` (any object with `infer`) still runs resident: numpy at its
    boundary, tensors again after it."""
    from cp_debug.recipes.centerpoint.stage_runners import ort_stage_runners, torch_stage_runners

    enc, _ = ort_stage_runners(onnx_dir)  # the thin ORT runner takes numpy only
    _, bb = torch_stage_runners(tiny_model)  # the thin torch runner takes tensors

    class Plain:
        def infer(self, feed):
            return enc.infer(feed)

    with enc:
        plain = run_pipeline(tiny_cfg, scene.points, Plain(), bb)
        kept = run_pipeline(tiny_cfg, scene.points, Plain(), bb, resident=True, on_device=True)
    assert isinstance(kept.pillar_features, torch.Tensor)
    _same(plain, kept)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_resident_run_with_the_demo_weights(tmp_path):
    """The demo preset's shipped weights and 0.32 m pillars, one held-out frame, ONNX Runtime: the same boundaries
    and boxes. On the middle 160 x 160 cells of the demo's 320 x 320 grid (+-25.6 m, the frame laid out for that
    range): a quarter of the work in each run; 16 boxes on this frame."""
    from cp_debug.data.frames import held_out
    from cp_debug.eval.session import load_weights
    from cp_debug.recipes import catalog
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.recipes.centerpoint.export import export_onnx

    cfg = get_preset("demo").with_(point_cloud_range=(-25.6, -25.6, -3.0, 25.6, 25.6, 5.0))
    assert cfg.grid_size == (160, 160)
    model = load_weights("demo", None, False, 0, catalog.recipe()).model
    points = held_out(1)[0].load(cfg).points
    export_onnx(model, cfg, tmp_path, sample_points=points)
    with BackendPipeline("ort", BackendSpec.parse("ort"), cfg, model, onnx_dir=tmp_path) as pipe:
        plain = run_pipeline(cfg, points, pipe.encoder, pipe.backbone)
        kept = run_pipeline(cfg, points, pipe.encoder, pipe.backbone, resident=True, on_device=True)
    assert len(plain.detections) > 0
    _same(plain, kept)

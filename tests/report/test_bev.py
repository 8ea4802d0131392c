"""BEV maps, pictures and the Rerun recording of a real CenterPoint bisect (tiny preset, a planted FP16 overflow in
the neck, torch against ONNX Runtime with float16 storage)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cp_debug.report.bev import BevMaps, layer_maps


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.bisect.engine import BisectEngine, BisectOptions
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject
    from tests.fix.planted import local_overflow_checkpoint

    ck = local_overflow_checkpoint(tmp_path_factory.mktemp("bev") / "overflow.pth", preset="tiny", peak=8e4)
    subject = centerpoint_subject("tiny", checkpoint=ck)
    engine = BisectEngine(subject, ("torch", BackendSpec.parse("torch")),
                          [("ort-cpu-fp16", BackendSpec.parse("ort-cpu-fp16"))], BisectOptions())
    try:
        return engine.run()
    finally:
        engine.close()


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_the_report_keeps_the_scan_truth_and_every_sides_head_maps(report):
    scene = report.scene
    cfg = scene.config
    assert scene.points.shape[1] >= 3 and len(scene.truth.boxes) > 0  # the synthetic scan brings its ground truth
    w, h = cfg.head_size
    for heads in (scene.reference, scene.candidates["ort-cpu-fp16"]):
        assert heads["heatmap"].shape == (1, cfg.num_classes, h, w) and heads["heatmap"].dtype == np.float32
    assert "scene" not in report.to_json()  # megabytes of arrays stay out of the JSON report


def test_maps_are_placed_in_metres_and_flips_are_threshold_crossings(report):
    scene = report.scene
    cfg = scene.config
    maps = BevMaps.from_heads(cfg, scene.reference, scene.candidates["ort-cpu-fp16"], decode=scene.decode,
                             head_names=scene.head_names)
    w, h = cfg.head_size
    cell = cfg.voxel_size[0] * cfg.out_size_factor
    assert maps.extent == pytest.approx((cfg.point_cloud_range[0], cfg.point_cloud_range[0] + w * cell,
                                         cfg.point_cloud_range[1], cfg.point_cloud_range[1] + h * cell))
    assert [p.name for p in maps.panels] == [f"heatmap: {c}" for c in cfg.class_names] + \
        ["reg", "height", "dim", "rot", "vel"]
    assert all(p.values.shape == (h, w) for p in maps.panels)
    ref_s = _sigmoid(scene.reference["heatmap"][0])
    cand_s = _sigmoid(scene.candidates["ort-cpu-fp16"]["heatmap"][0])
    for f in maps.flips:  # every flip is what it says, at the place it says
        k = cfg.class_names.index(f.cls)
        assert f.x == pytest.approx(maps.extent[0] + (f.col + 0.5) * cell)
        assert f.ref_score == pytest.approx(ref_s[k, f.row, f.col], nan_ok=True)
        if f.kind == "lost":
            assert ref_s[k, f.row, f.col] > cfg.score_threshold and not cand_s[k, f.row, f.col] > cfg.score_threshold
        if f.kind == "added":
            assert cand_s[k, f.row, f.col] > cfg.score_threshold and not ref_s[k, f.row, f.col] > cfg.score_threshold
    assert maps.lost.sum() == sum(f.kind == "lost" for f in maps.flips)

    same = BevMaps.from_heads(cfg, scene.reference, scene.reference, decode=scene.decode,
                             head_names=scene.head_names)
    assert not same.flips and all(np.nanmax(p.values) == 0 for p in same.panels)


def test_a_peak_pushed_below_the_threshold_is_one_lost_flip_where_its_box_was(report):
    scene = report.scene
    cfg = scene.config
    ref = scene.reference
    from cp_debug.models.centerpoint.decode import decode

    boxes = decode(ref, cfg)
    assert len(boxes) > 0
    label, flat = int(boxes.labels[0]), int(boxes.cells[0])
    w = cfg.head_size[0]
    row, col = divmod(flat, w)
    cand = {k: v.copy() for k, v in ref.items()}
    cand["heatmap"][0, label, row, col] = -5.0  # score 0.0067, below the threshold 0.1
    maps = BevMaps.from_heads(cfg, ref, cand, decode=decode, head_names=scene.head_names)
    lost = [f for f in maps.flips if f.kind == "lost"]
    assert [(f.cls, f.row, f.col) for f in lost] == [(cfg.class_names[label], row, col)]
    assert math.hypot(lost[0].x - boxes.boxes[0, 0], lost[0].y - boxes.boxes[0, 1]) < 1.5 * cfg.voxel_size[0] * \
        cfg.out_size_factor  # the flip sits on its box (the centre is the cell plus reg)
    assert lost[0].cand_score == pytest.approx(_sigmoid(-5.0))
    assert maps.lost[row, col] and maps.lost.sum() == 1 and not maps.added.any()


def test_the_root_cause_segment_is_kept_as_bev_maps(report):
    cand = report.candidates[0]
    kept = report.plots[cand.label]["segment"]
    assert cand.root_cause.probe in [hm["probe"] for hm in kept]
    layers = layer_maps(report.scene.config, kept)
    assert layers and all(m.extent[0] == report.scene.config.point_cloud_range[0] for m in layers)


def test_pictures_and_html_are_self_contained(report, tmp_path):
    from cp_debug.report.bev_plot import bisect_pictures, write_pictures
    from cp_debug.report.html import write_html

    pics = bisect_pictures(report)
    names = [p.name for p in pics["ort-cpu-fp16"].pictures]
    assert names == ["bev-ort-cpu-fp16", "peakflip-ort-cpu-fp16", "segment-ort-cpu-fp16"]
    files = write_pictures(list(pics["ort-cpu-fp16"].pictures), tmp_path / "pics")
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    html = write_html(report, tmp_path / "r.html", pics).read_text()
    assert "Bird's-eye view (m)" in html and html.count("data:image/png;base64,") >= 5
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_the_recording_reads_back_with_rerun(report, tmp_path):
    pytest.importorskip("rerun")
    from rerun.chunk import RrdReader

    from cp_debug.report.rerun_export import bisect_recording

    path = bisect_recording(report, tmp_path / "b.rrd")
    frames: dict[str, set] = {}
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        if "frame" in batch.schema.names:
            frames.setdefault(chunk.entity_path, set()).update(batch.column("frame").to_pylist())
    for entity in ("/scan", "/truth", "/boxes/torch", "/boxes/ort-cpu-fp16", "/bev/ort-cpu-fp16/heatmap/car",
                   "/bev/ort-cpu-fp16/reg/values", "/bev/ort-cpu-fp16/peakflip_map", "/probes/ort-cpu-fp16"):
        assert frames.get(entity) == {0}, entity
    assert not list(tmp_path.glob(".*tmp"))  # written whole

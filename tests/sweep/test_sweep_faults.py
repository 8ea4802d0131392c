"""A planted frame-specific fault is found first, classed layer-local and named; rounding noise is uniform."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cp_debug.models.centerpoint.presets import get_preset
from cp_debug.data.frames import held_out
from cp_debug.sweep.lanes import build_subject
from cp_debug.sweep.records import SweepSettings
from cp_debug.sweep.report import write_all
from cp_debug.sweep.session import SweepOptions, run_sweep
from tests.sweep.planted import FAULT_BLOCK, occupied_pillars, write_faulty_deployment

N = 6


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    cfg = get_preset("tiny")
    tmp = tmp_path_factory.mktemp("sweep")
    frames = held_out(N)
    occupied = {f.token: occupied_pillars(f.load(cfg).points, cfg) for f in frames}
    ranked = sorted(occupied.values(), reverse=True)
    threshold = (ranked[1] + ranked[2]) / 2  # the two densest frames only
    faulty = write_faulty_deployment(build_subject(SweepSettings(("torch", "ort"), preset="tiny")), tmp / "deploy",
                                     threshold)
    cand = f"ort@{faulty}"
    settings = SweepSettings(("torch", cand, "ort-cpu-fp16"), preset="tiny")
    opts = SweepOptions(settings, tmp / "out", n=N, shard_size=4, bisect_top=0, bootstrap=20)
    outcome = run_sweep(opts)
    doc = write_all(outcome, opts)
    dense = sorted(occupied, key=occupied.get, reverse=True)[:2]
    return doc, cand, set(dense), tmp / "out", outcome, opts


def test_planted_fault_frames_rank_first_classed_local_with_the_layer(swept):
    doc, cand, dense, *_ = swept
    top = doc["frames"][:2]
    assert {f["token"] for f in top} == dense
    for f in top:
        v = f["candidates"][cand]
        assert v["class"] == "local" and v["local_probe"] == FAULT_BLOCK
        assert f["class"] == "local" and f["candidate"] == cand
        assert v["outcome"] == f["outcome"] == "diverged" and "layer-local" in v["reason"]
    for f in doc["frames"][2:]:  # the same deployed graph, not firing: FP32 noise only
        assert f["candidates"][cand]["class"] in (None, "uniform")
    assert doc["summary"]["local"] == 2


def test_rounding_noise_alone_is_uniform(swept):
    doc, *_ = swept
    fp16 = [f["candidates"]["ort-cpu-fp16"] for f in doc["frames"]]
    assert all(v["class"] in ("uniform", None) for v in fp16)
    assert max(v["worst_ratio"] for v in fp16) < 3  # far below the factor of 10 (rank.py)
    # …and within FP16's expected rounding on every frame (the noise model): no false alarm
    assert all(v["precision"] == "fp16" and v["worst_noise_ratio"] < 1 for v in fp16), fp16
    assert [v["outcome"] for v in fp16] == ["within_precision"] * N


def test_files_follow_the_contract(swept):
    import pandas as pd

    doc, cand, _, out, *_ = swept
    on_disk = json.loads((out / "sweep.json").read_text())
    assert on_disk["schema"] == "cp_debug.sweep/2" and on_disk["candidates"] == [cand, "ort-cpu-fp16"]
    assert on_disk["outcome"] == "diverged" and on_disk["tolerance_mode"] == "model"
    assert on_disk["summary"]["outcomes"]["diverged"] == 2 and on_disk["verdict"].startswith("diverged: ")
    assert [f["rank"] for f in on_disk["frames"]] == list(range(1, N + 1))
    df = pd.read_parquet(out / "frames.parquet")
    probes = len(on_disk["probes"]["ort-cpu-fp16"])
    assert len(df) == N * 2 * probes and set(df["candidate"]) == {cand, "ort-cpu-fp16"}
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    chain = doc["metrics"]["chain"]
    assert [(s["from"], s["to"]) for s in chain] == [("torch", cand), (cand, "ort-cpu-fp16")]
    assert all(np.isfinite(s["delta_map"]) for s in chain)


def test_the_rerun_recording_holds_every_frame(swept, tmp_path):
    pytest.importorskip("rerun")
    from rerun.chunk import RrdReader

    from cp_debug.sweep.rerun import sweep_recording

    doc, cand, *_, outcome, opts = swept
    path = sweep_recording(outcome, opts, tmp_path / "sweep.rrd")
    frames: dict[str, set] = {}
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        if "frame" in batch.schema.names:
            frames.setdefault(chunk.entity_path, set()).update(batch.column("frame").to_pylist())
    every = set(range(N))
    from rerun import new_entity_path

    for entity in ("/frame", "/scan", "/truth", "/boxes/torch", new_entity_path(["boxes", cand]),
                   new_entity_path(["probes", cand]), "/probes/ort-cpu-fp16",
                   "/errors/ort-cpu-fp16/pts_backbone.blocks.1"):
        assert frames.get(entity) == every, entity

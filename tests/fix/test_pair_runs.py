"""`recipes.centerpoint.fix.pair_runs.PairRuns` on the tiny preset's exported pair (random weights, 2 held-out
frames): what it takes from earlier runs (fronts, a voxel encoder's outputs by its graph's bytes, kept head maps) is
bit for bit what a fresh pipeline run gives; a changed graph misses; verification on the search's frames runs nothing
again."""

from __future__ import annotations

import numpy as np
import pytest

BACKBONE, ENCODER = "pts_backbone_neck_head.onnx", "pts_voxel_encoder.onnx"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(cfg, frames, FP32 pair, plain FP16 pair, {encoder, backbone}: a node of each kept in FP32)."""
    import onnx

    from cp_debug.data.frames import HeldOutSet
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.models.centerpoint.source import load_model
    from cp_debug.precision.fp16 import convert_to_fp16
    from cp_debug.recipes.centerpoint.export import export_onnx

    cfg = get_preset("tiny")
    model = load_model("tiny", None, 0, random_weights=True).model.eval()
    frames = HeldOutSet.load(cfg, 2)
    res = export_onnx(model, cfg, tmp_path_factory.mktemp("pair"), sample_points=frames.frames[0].load(cfg).points)
    fp32 = {p.name: onnx.load(str(p)) for p in (res.voxel_encoder, res.backbone)}
    plain = {f: convert_to_fp16(m) for f, m in fp32.items()}
    first_conv = {f: next(n.name for n in m.graph.node if n.op_type in ("Conv", "MatMul")) for f, m in fp32.items()}
    kept = {f: convert_to_fp16(fp32[f], keep_fp32_nodes=[first_conv[f]]) for f in fp32}
    return cfg, frames, fp32, plain, kept


def _fresh(cfg, frames, enc, bb, indices=(0, 1)):
    """Head maps per frame as the fix ran a pair before `PairRuns`: both sessions opened, each frame from its
    points."""
    from cp_debug.backends import make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.recipes.centerpoint.pipeline import run_pipeline

    spec = BackendSpec.parse("ort-cpu")
    with make_runner(spec, onnx_model=enc) as e, make_runner(spec, onnx_model=bb) as b:
        return [run_pipeline(cfg, frames.frames[i].load(cfg).points, e, b, capture=False).head for i in indices]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=True)
                                                                 for k in x) for x, y in zip(a, b))


def test_taken_outputs_are_what_a_fresh_run_gives_and_a_changed_graph_misses(pair):
    import onnx

    from cp_debug.recipes.centerpoint.fix.pair_runs import PairRuns

    cfg, frames, fp32, plain, kept = pair
    runs = PairRuns(cfg, frames)
    got, seconds = runs.heads(plain[ENCODER], plain[BACKBONE], keep=True)
    assert runs.runs == {"sessions": 2, "encoder_runs": 2, "backbone_runs": 2}
    assert _same(got, _fresh(cfg, frames, plain[ENCODER], plain[BACKBONE]))

    # a set in the backbone: the plain encoder's outputs taken (no encoder session), the backbone run
    got_kept, _ = runs.heads(plain[ENCODER], kept[BACKBONE])
    assert runs.runs == {"sessions": 3, "encoder_runs": 2, "backbone_runs": 4}
    assert _same(got_kept[1:], _fresh(cfg, frames, plain[ENCODER], kept[BACKBONE], [1]))
    assert not _same(got_kept, got)  # the comparison can fail: the kept node changes the maps

    # the kept pair again (the same bytes in another object): nothing run, the same maps and seconds
    again, again_seconds = runs.heads(onnx.load_from_string(plain[ENCODER].SerializeToString()), plain[BACKBONE],
                                      [1, 0])
    assert runs.runs["backbone_runs"] == 4 and _same(again, got[::-1])
    assert again_seconds == {k: v[::-1] for k, v in seconds.items()}
    # a pair not kept is run again; a forgotten one too
    runs.heads(plain[ENCODER], kept[BACKBONE], [0])
    assert runs.runs["backbone_runs"] == 5
    runs.forget(plain[ENCODER], plain[BACKBONE])
    runs.heads(plain[ENCODER], plain[BACKBONE], [1])
    assert runs.runs == {"sessions": 5, "encoder_runs": 2, "backbone_runs": 6}

    # another encoder graph (a node kept in FP32): its own outputs, run
    got_enc, _ = runs.heads(kept[ENCODER], plain[BACKBONE], [0])
    assert runs.runs["encoder_runs"] == 3
    assert _same(got_enc, _fresh(cfg, frames, kept[ENCODER], plain[BACKBONE], [0]))


def test_verification_on_the_search_frames_runs_nothing_the_search_kept(pair):
    from cp_debug.data.frames import HeldOutSet
    from cp_debug.recipes.centerpoint.fix.pair_runs import PairRuns
    from cp_debug.fix.targets import FixTarget
    from cp_debug.recipes.centerpoint.fix.verify import verify_pair

    cfg, frames, fp32, plain, kept = pair
    ref, fix = ([m[f] for f in (ENCODER, BACKBONE)] for m in (fp32, {**plain, BACKBONE: kept[BACKBONE]}))
    one = HeldOutSet.load(cfg, 1)
    runs = PairRuns(cfg, one)
    for p in (ref, fix):
        runs.heads(*p, keep=True)
    made = dict(runs.runs)
    target = FixTarget(tol=0.5)
    taken = verify_pair(cfg, one, target, ref, fix, precision="fp16", bootstrap=0, runs=runs)
    assert runs.runs == made  # both pairs' maps taken
    fresh = verify_pair(cfg, one, target, ref, fix, precision="fp16", bootstrap=0)
    assert taken.fixed.figures == fresh.fixed.figures
    assert (taken.fixed.map, taken.reference_map) == (fresh.fixed.map, fresh.reference_map)
    # other frames (the same scenes in another set) are not served by the search's runs
    assert runs.serves(one, "cpu") and not runs.serves(HeldOutSet.load(cfg, 1), "cpu")
    assert not runs.serves(one, "cuda")

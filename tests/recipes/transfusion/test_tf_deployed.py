"""`bisect --recipe transfusion --backends torch,ort@DIR`: a deployed one-graph transfusion.onnx cut at the proposal
selection into the bisect's two stages (`recipes/transfusion/split.py`), its probes mapped by scope; the split graphs
compute what the whole file computes; a file that is not Autoware's TransFusion-L is one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """transfusion-tiny's transfusion.onnx as `cpdebug export --recipe transfusion --random-weights` writes it (the
    weights `bisect --random-weights` loads)."""
    from cp_debug.recipes.transfusion.export import export_transfusion
    from cp_debug.recipes.transfusion.source import load_transfusion

    out = tmp_path_factory.mktemp("tf-deployed")
    loaded = load_transfusion("transfusion-tiny", None, 0, True)
    export_transfusion(loaded.model.eval(), loaded.cfg, out, max_voxels=300)
    return out


def _ort(model, feed):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()})))


def test_split_stages_compute_what_the_whole_file_computes(deployed):
    """Stage 0 of the split file gives the whole file's dense heatmap; stage 1 on given proposals (not the file's
    own: a random set) gives the outputs of the whole file pinned to them (`export.pin_proposals`)."""
    from cp_debug.models.transfusion.presets import get_preset
    from cp_debug.recipes.transfusion.export import example_voxels, pin_proposals, proposal_tensors
    from cp_debug.recipes.transfusion.interface import BBOX_HEADS
    from cp_debug.recipes.transfusion.split import deployed_split

    cfg = get_preset("transfusion-tiny")
    path, (bev, query) = deployed_split(deployed, "ort@DIR")
    whole = onnx.load(str(path))
    feed = dict(zip(("voxels", "num_points", "coors"), (t.numpy() for t in example_voxels(cfg, max_voxels=250))))
    up = _ort(bev, feed)
    # the whole file pinned to proposals of our choosing, its dense heatmap and local maxima exposed
    dense, scores, _ = proposal_tensors(whole)
    pinned = pin_proposals(whole)
    pinned.graph.output.extend([onnx.helper.make_empty_tensor_value_info(t) for t in (dense, scores)])
    k, flat = cfg.num_proposals, up["dense_heatmap"].size
    proposals = np.random.default_rng(0).choice(flat, size=(1, k), replace=False).astype(np.int64)
    got = _ort(pinned, {**feed, "top_proposals": proposals})
    np.testing.assert_allclose(up["dense_heatmap"], got[dense], rtol=1e-5, atol=1e-6)
    cells = up["dense_heatmap"].shape[2] * up["dense_heatmap"].shape[3]
    local = got[scores].reshape(1, -1, cells)  # the file's own local maxima, gathered at the proposals
    qscore = np.take_along_axis(local, np.broadcast_to(proposals[:, None, :] % cells, (1, local.shape[1], k)), -1)
    out = _ort(query, {"bev_features_in": up["bev_features"], "top_proposals": proposals,
                       "query_heatmap_score": qscore})
    np.testing.assert_allclose(out["cls_score"], got["cls_score0"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.concatenate([out[h] for h in BBOX_HEADS], axis=1), got["bbox_pred0"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(out["rot"], got["dir_cls_pred0"], rtol=1e-5, atol=1e-6)
    assert not np.array_equal(proposals, got[[o.name for o in pinned.graph.output][3]])  # not the file's own choice


def test_an_fp16_file_cuts_through_its_casts(deployed):
    """The FP16 file (its outputs through Casts back to FP32) cuts at the same tensors, the interface's names."""
    from cp_debug.precision.fp16 import convert_to_fp16
    from cp_debug.recipes.transfusion.split import split_transfusion
    from cp_debug.recipes.transfusion.stages import BEV_INPUTS, BEV_OUTPUTS, QUERY_INPUTS, QUERY_OUTPUTS

    half = convert_to_fp16(onnx.load(str(deployed / "transfusion.onnx")))
    bev, query = split_transfusion(getattr(half, "model", half))
    inits = {t.name for m in (bev, query) for t in m.graph.initializer}
    for m, ins, outs in ((bev, BEV_INPUTS, BEV_OUTPUTS), (query, QUERY_INPUTS, QUERY_OUTPUTS)):
        assert tuple(i.name for i in m.graph.input if i.name not in inits) == ins
        assert tuple(o.name for o in m.graph.output) == outs
    assert any(n.op_type == "Cast" for n in query.graph.node)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_bisect_deployed_file_as_the_export(deployed, tmp_path):
    """The deployed FP32 file against torch: every probe mapped by scope, the same verdict and the same numbers
    (within FP32's rounding) as cp_debug's own export of the two stages, in one run."""
    from cp_debug.lidar.synthetic import synthetic_scene
    from cp_debug.models.transfusion.presets import get_preset

    points = tmp_path / "scan.bin"
    synthetic_scene(3, get_preset("transfusion-tiny")).points[:600].astype(np.float32).tofile(points)
    out = tmp_path / "r.json"
    dep = f"ort-cpu@{deployed}"
    res = cpdebug("bisect", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights",
                  "--backends", f"torch,ort-cpu,{dep}", "--points", points, "--no-noise-floor", "--no-local",
                  "--json", out)
    assert res.returncode == 0, res.stderr
    doc = json.loads(out.read_text())
    assert doc["outcomes"] == {"ort-cpu": "within_precision", dep: "within_precision"}
    found = doc["settings"]["deployed"][dep]
    assert set(found) == {"pts_bev", "pts_bbox_head"} and found["pts_bev"]["file"] == str(deployed / "transfusion.onnx")
    cross = found["pts_bbox_head"]["mapped"]["pts_bbox_head.decoder.0.cross_attn"]
    assert cross["by"] == "scope" and cross["tensor"].startswith("/pts_bbox_head/decoder.0/cross_attn/")
    ours = {r["probe"]: r for r in doc["results"]["ort-cpu"]}
    theirs = {r["probe"]: r for r in doc["results"][dep]}
    assert set(theirs) == set(ours) and "pts_bbox_head.decoder.0.cross_attn" in theirs
    for name, r in theirs.items():
        assert r["status"] == "ok", name
        # the same computation as the export's: both far inside FP32's expected rounding (6.1e-5 relative RMS)
        assert r["rel_rmse"] <= 1e-5 and abs(r["rel_rmse"] - ours[name]["rel_rmse"]) <= 5e-6, name
    assert doc["decisions"][dep][0]["changed"] is False
    mapped = [w for w in doc["warnings"] if "probes mapped onto the deployed graph" in w]
    assert [w.split(": ")[1] for w in mapped] == ["transfusion.onnx (pts_bev)", "transfusion.onnx (pts_bbox_head)"]


def test_not_autoware_s_file_is_one_line(deployed, tmp_path):
    """Other output names, or no TopK: one line, exit 2, before the model loads."""
    from onnx import TensorProto, helper

    from cp_debug.errors import BadInputError
    from cp_debug.recipes.transfusion.split import deployed_split

    renamed = onnx.load(str(deployed / "transfusion.onnx"))
    renamed.graph.output[0].name = "scores"
    for n in renamed.graph.node:
        n.output[:] = ["scores" if t == "cls_score0" else t for t in n.output]
    (tmp_path / "renamed").mkdir()
    onnx.save(renamed, str(tmp_path / "renamed" / "transfusion.onnx"))
    res = cpdebug("bisect", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights",
                  "--backends", f"torch,ort-cpu@{tmp_path / 'renamed'}", "--no-noise-floor", "--no-local")
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "scores, bbox_pred0, dir_cls_pred0; the node binds" in lines[0], res.stderr
    assert "loading the model" not in res.stderr

    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 20, 5]) for n in ("voxels", *DEPLOY_OUT)]
    ints = [helper.make_tensor_value_info(n, TensorProto.INT32, ["n"]) for n in ("num_points", "coors")]
    graph = helper.make_graph([helper.make_node("Identity", ["voxels"], [o]) for o in DEPLOY_OUT], "no_topk",
                              [vi[0], *ints], vi[1:])
    (tmp_path / "no_topk").mkdir()
    onnx.save(helper.make_model(graph), str(tmp_path / "no_topk" / "transfusion.onnx"))
    with pytest.raises(BadInputError, match="transfusion.onnx: the TransFusion graph has no TopK"):
        deployed_split(tmp_path / "no_topk", "ort@DIR")
    with pytest.raises(BadInputError, match="transfusion.onnx is missing"):
        deployed_split(tmp_path, "ort@DIR")


DEPLOY_OUT = ("cls_score0", "bbox_pred0", "dir_cls_pred0")

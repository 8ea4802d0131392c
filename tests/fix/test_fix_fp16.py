"""`cpdebug fix` on a planted FP16 fault (the CLI, run in process): the search finds exactly the nodes storing the
planted values, the written pair loads in ONNX Runtime, its kept nodes compute in float32 (checked on the graph), it
matches FP32 where the plain FP16 pair does not — in ONNX Runtime's own CPU run and as a GPU stores float16 — and
`fix --check` re-verifies it and names a changed version."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.fix.cli import cpdebug
from tests.fix.planted import LOCAL_OVERFLOW_NODES, PLANTED_NODE, local_overflow_checkpoint

pytestmark = pytest.mark.slow
# The planted neck values (2e5) overflow wherever they are stored in float16 (as a GPU stores them;
# `precision.half_storage` on the CPU): the deblock's conv and ReLU, the neck's concat and the shared conv reading
# it. An unrestricted search on this model finds exactly these 4 nodes in 11 runs.
NEEDED = list(LOCAL_OVERFLOW_NODES)




@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fix_fp16")
    ckpt = local_overflow_checkpoint(tmp / "planted.pth")
    out = tmp / "fix"
    proc = cpdebug("--preset", "tiny", "--checkpoint", ckpt, "--backends", "torch,ort-cpu-fp16",
                   "--max-rel-rmse", "0.05", "--n", 1, "--bootstrap", 0, "--out", out, "--json",
                   tmp / "fix_run.json", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads((tmp / "fix_run.json").read_text()), proc.stdout


def _heads(path_enc, path_bb, cfg, points):
    """The pair run by plain ONNX Runtime sessions through the staged pipeline (no cp_debug runner)."""
    import onnxruntime as ort

    from cp_debug.recipes.centerpoint.pipeline import run_pipeline

    class Session:
        def __init__(self, model):
            data = model if isinstance(model, bytes) else open(model, "rb").read()
            self.s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])

        def infer(self, feed):
            return dict(zip([o.name for o in self.s.get_outputs()], self.s.run(None, feed)))

    return run_pipeline(cfg, points, Session(path_enc), Session(path_bb), capture=False).head


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_fp16_fix_keeps_the_planted_node_in_fp32_and_matches_fp32_where_plain_fp16_does_not(written):
    import onnx

    from cp_debug.fix.artifact import kept_fp32_violations
    from cp_debug.data.frames import held_out
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.precision.fp16 import convert_to_fp16
    from cp_debug.compare.pooled import rel_rmse

    out, doc, stdout = written
    names = {p.name for p in out.iterdir()}
    assert names == {"pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx", "fp32.pts_voxel_encoder.onnx",
                     "fp32.pts_backbone_neck_head.onnx", "nodes_to_exclude.json", "skip_layers.txt", "fix.json",
                     "README.md"}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".fix.")]  # no temp dir left behind
    assert doc["status"] == "found" and sorted(doc["search"]["keep"]) == sorted(NEEDED)
    assert doc["search"]["runs"] <= 16  # ranked by FP32 magnitudes: the planted nodes come first
    assert "pts_neck.deblocks.0.0" in doc["set"]["modules"]
    node = PLANTED_NODE.split(":", 1)[1]
    assert node in json.loads((out / "nodes_to_exclude.json").read_text())["pts_backbone_neck_head.onnx"]
    assert "pts_neck.deblocks.0.0" in (out / "skip_layers.txt").read_text().strip().split(",")

    # on the graph: the kept Conv's inputs and outputs are float32 (types from ONNX shape inference) ...
    fixed = onnx.load(str(out / "pts_backbone_neck_head.onnx"))
    assert kept_fp32_violations(fixed, [node]) == {}
    conv = next(n for n in fixed.graph.node if n.name == node)
    casts = {n.output[0]: n for n in fixed.graph.node if n.op_type == "Cast"}
    assert conv.input[0] in casts and casts[conv.input[0]].attribute[0].i == onnx.TensorProto.FLOAT  # explicit Cast
    # ... while the plain FP16 conversion of the same FP32 file leaves it in float16: the check can fail
    fp32 = onnx.load(str(out / "fp32.pts_backbone_neck_head.onnx"))
    assert node in kept_fp32_violations(convert_to_fp16(fp32), [node])
    assert sum(1 for n in fixed.graph.node if n.op_type == "Cast") > 2  # the rest really is FP16

    # the written files in fresh ONNX Runtime sessions, on a frame: within tol of FP32, the plain FP16 pair is not
    cfg = get_preset("tiny")
    points = held_out(1)[0].load(cfg).points
    ref = _heads(out / "fp32.pts_voxel_encoder.onnx", out / "fp32.pts_backbone_neck_head.onnx", cfg, points)
    got = _heads(out / "pts_voxel_encoder.onnx", out / "pts_backbone_neck_head.onnx", cfg, points)
    assert max(rel_rmse([ref[k]], [got[k]]) for k in ref) <= 0.05
    # ... and as a GPU stores float16 (every float16 tensor rounded after its node): the fix holds, the plain FP16
    # pair does not (ORT's own CPU run of the plain pair may pass: it keeps the planted values in float32)
    from cp_debug.precision.half_storage import emulate_half_storage

    def stored(*models):
        return [emulate_half_storage(m).model.SerializeToString() for m in models]

    fixed_pair = [onnx.load(str(out / f)) for f in ("pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx")]
    gpu_like = _heads(*stored(*fixed_pair), cfg, points)
    assert max(rel_rmse([ref[k]], [gpu_like[k]]) for k in ref) <= 0.05
    plain = _heads(*stored(convert_to_fp16(onnx.load(str(out / "fp32.pts_voxel_encoder.onnx"))),
                           convert_to_fp16(fp32)), cfg, points)
    assert not np.isfinite(plain["heatmap"]).all() or max(rel_rmse([ref[k]], [plain[k]]) for k in ref) > 0.05

    v = doc["verification"]
    assert v["holds"] and v["fixed"]["worst_rel_rmse"] <= 0.05
    assert not float(v["plain"]["worst_rel_rmse"]) <= 0.05  # NaN or beyond: the plain FP16 pair fails
    assert set(v["latency_cost_ms"]) == {"pts_voxel_encoder", "pts_backbone_neck_head"}
    assert doc["environment"]["onnxruntime"] and "nvidia_driver" in doc["environment"]
    assert set(json.loads((out / "fix.json").read_text())["files"]) >= {"pts_backbone_neck_head.onnx", "README.md"}
    readme = (out / "README.md").read_text()
    assert "--stronglyTyped" in readme and "polygraphy convert" in readme and "holds" in readme
    assert "4 node(s) kept in FP32" in stdout or doc["out"]


def test_check_passes_here_and_names_a_changed_version(written, tmp_path):
    from cp_debug.fix.check import toolchain, version_changes

    out, doc, _ = written
    assert version_changes(doc["environment"], toolchain()) == ()  # recorded on this machine: nothing differs
    copy = tmp_path / "fix"
    shutil.copytree(out, copy)
    recorded = json.loads((copy / "fix.json").read_text())
    now = recorded["environment"]["onnxruntime"]
    recorded["environment"]["onnxruntime"] = "1.0.0"
    (copy / "fix.json").write_text(json.dumps(recorded))
    proc = cpdebug("--check", copy, "--device", "cpu", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "here, on cpu" in proc.stdout
    assert f"onnxruntime 1.0.0 -> {now}" in proc.stdout and "holds" in proc.stdout
    assert "figures changed" not in proc.stdout  # same machine, same frames: the same figures
    proc = cpdebug("--check", copy, "--json", "-", "--quiet")
    report = json.loads(proc.stdout)
    assert report["holds"] and report["changed_versions"] == [{"name": "onnxruntime", "recorded": "1.0.0", "now": now}]
    assert report["modified_files"] == []


@pytest.fixture(scope="module")
def deployed_fix(written, tmp_path_factory):
    """The user's own deployed FP32 pair — the FP32 pair of the fix above with every node and tensor renamed (n0, …,
    t0, …: another exporter's names) — fixed with `ort-cpu-fp16@DIR` on 2 scenes written by `cpdebug scenes`
    (`write_scene_set`): the search judges the first, the verification the second."""
    import onnx

    from cp_debug.data.scene_set import write_scene_set
    from cp_debug.data.scenes import heldout_seeds
    from cp_debug.models.centerpoint.presets import get_preset
    from tests.bisect.deployed_files import edited, rename

    out = written[0]
    tmp = tmp_path_factory.mktemp("fix_deployed")
    deploy = tmp / "deploy"
    deploy.mkdir()
    tables = {}
    for name in ("pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx"):
        table = tables.setdefault(name, {})
        onnx.save(edited(onnx.load(str(out / f"fp32.{name}")), lambda g: rename(g, table)), deploy / name)
    write_scene_set(get_preset("tiny"), tmp / "scenes", heldout_seeds(2))
    fixed = tmp / "fix"
    proc = cpdebug("--preset", "tiny", "--checkpoint", out.parent / "planted.pth", "--backends",
                   f"torch,ort-cpu-fp16@{deploy}", "--scenes", tmp / "scenes" / "infos.pkl", "--max-rel-rmse", "0.05",
                   "--bootstrap", 0, "--out", fixed, "--json", tmp / "fix_run.json", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return deploy, fixed, json.loads((tmp / "fix_run.json").read_text()), out


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_fix_of_a_deployed_pair_writes_that_pair_fixed_and_verifies_on_frames_it_did_not_search(deployed_fix):
    import onnx
    import onnx_graphsurgeon as gs

    deploy, fixed, doc, ours = deployed_fix
    assert doc["pair"]["from"] == "deployed" and doc["pair"]["dir"] == str(deploy)
    # the same set as on cp_debug's export of this model, found on the user's nodes: the planted nodes' renamed
    # counterparts (`rename` names the k-th node n<k>)
    theirs = gs.import_onnx(onnx.load(str(ours / "fp32.pts_backbone_neck_head.onnx"))).nodes
    planted = {key.split(":", 1)[1] for key in NEEDED}
    kept = doc["search"]["keep"]
    assert sorted(kept) == sorted(f"pts_backbone_neck_head.onnx:n{k}" for k, node in enumerate(theirs)
                                  if node.name in planted)
    assert {m for m in doc["set"]["node_modules"].values()} >= {"pts_neck.deblocks.0.1", "pts_neck.deblocks.0.2"}
    # held out: the verification's frames are not the search's, and the report says which each are
    search, verify = doc["search_frames"], doc["verification"]["frames"]
    assert search["kind"] == verify["kind"] == "scenes"
    assert search["tokens"] == ["scene_1000000"] and verify["tokens"] == ["scene_1000001"]
    assert doc["held_out_verification"] is True and doc["verification"]["holds"]
    # the written pair is the user's files with the Casts added: their names, interface, nodes and initializers
    for name in ("pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx"):
        user, ours = onnx.load(str(deploy / name)), onnx.load(str(fixed / name))
        assert [(i.name, i.type) for i in ours.graph.input] == [(i.name, i.type) for i in user.graph.input]
        assert [(o.name, o.type) for o in ours.graph.output] == [(o.name, o.type) for o in user.graph.output]
        user_nodes = {n.name for n in user.graph.node if n.op_type != "Constant"}  # (constants become initializers)
        assert user_nodes <= {n.name for n in ours.graph.node}  # every node of the user's, none of cp_debug's
        assert not [n.name for n in ours.graph.node if n.name.startswith("/pts_")]
        assert {i.name for i in user.graph.initializer} & {i.name for i in ours.graph.initializer}
        assert onnx.load(str(fixed / f"fp32.{name}")).graph == user.graph  # judged against the user's FP32 pair
    excl = json.loads((fixed / "nodes_to_exclude.json").read_text())
    assert sorted(f"pts_backbone_neck_head.onnx:{n}" for n in excl["pts_backbone_neck_head.onnx"]) == sorted(kept)
    assert f"`{deploy}`" in (fixed / "README.md").read_text()


def test_check_of_a_deployed_pair_fix_reads_its_files_and_scenes(deployed_fix):
    _, fixed, doc, _ = deployed_fix
    proc = cpdebug("--check", fixed, "--json", "-", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["holds"] and report["changed_figures"] == [] and report["modified_files"] == []
    assert report["verification"]["frames"]["tokens"] == doc["verification"]["frames"]["tokens"]


def test_bad_requests_are_one_line_and_exit_2(tmp_path):
    deployed = tmp_path / "deploy"
    deployed.mkdir()
    (deployed / "pts_voxel_encoder.onnx").write_bytes(b"")  # never read: the request is refused first
    cases = [
        (("--out", tmp_path / "x", "--preset", "tiny", "--tolerance-mode", "fixed"), "give a target"),
        (("--out", tmp_path / "x", "--tolerance-mode", "exact"), "--tolerance-mode 'exact'"),
        (("--out", tmp_path / "x", "--max-rel-rmse", "0.1", "--backends", "torch,trt-fp16"),
         "ONNX Runtime FP16 or INT8"),
        (("--out", tmp_path / "x", "--max-rel-rmse", "0.1", "--backends", "torch"), "REF,CAND"),
        (("--check", tmp_path), "fix.json"),
        (("--max-rel-rmse", "0.1"), "--out DIR"),
        (("--check", tmp_path, "--device", "tpu"), "--device must be cpu or cuda"),
        (("--out", tmp_path / "x", "--max-rel-rmse", "0.1", "--device", "cuda"), "--device goes with --check"),
        (("--out", tmp_path / "x", "--backends", f"torch,ort-cpu-int8@{deployed}"), "searches FP16 candidates"),
        (("--out", tmp_path / "x", "--scenes", tmp_path), "give an info file"),
        (("--out", tmp_path / "x", "--n", "3", "--data-root", tmp_path), "--data-root goes with --scenes PATH"),
    ]
    for args, match in cases:
        proc = cpdebug(*args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
        assert proc.returncode == 2 and len(lines) == 1 and match in lines[0], (args, proc.stderr)

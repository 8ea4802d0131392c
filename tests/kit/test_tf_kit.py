"""`cpdebug trt-kit --recipe transfusion` (issue 57): TransFusion-L's kit holds Autoware's one graph with the node's
optimization profile (voxels_num of the real transfusion_ml_package.param.yaml) and precision (trt_precision of
transfusion.param.yaml); its scripts parse and carry those shapes; `--fix DIR` puts a real `cpdebug fix --recipe
transfusion` file in the kit as it is (FP16, the planted cross-attention kept in FP32); TensorRT-RTX's real builder
builds the kit's files at FP32, FP16 and the fix's (built only: no engine runs here, TensorRT-RTX's runtime needs a
GPU); the target's results of the one graph are read back; bad input is one line, exit 2, nothing written.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from cp_debug.backends.kit import kit_files as kf
from cp_debug.backends.spec import BackendSpec
from tests.recipes.transfusion.planted import planted_checkpoint

AUTOWARE = Path(__file__).parents[1] / "data" / "autoware"
PARAMS = [AUTOWARE / "transfusion.param.yaml", AUTOWARE / "transfusion_ml_package.param.yaml"]
VOXELS_NUM = (5000, 30000, 60000)  # transfusion_ml_package.param.yaml
STAGE = "transfusion"
ATTN = "/pts_bbox_head/decoder.0/cross_attn/attn/"
KEPT = [ATTN + "MatMul_3", ATTN + "Softmax"]  # what the fix of the planted cross-attention keeps (its full search too)


def _cli(*args: str):
    """(exit code, non-empty output lines) of `cpdebug ARGS` in this process."""
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    proc = CliRunner().invoke(app, list(args))
    return proc.exit_code, [ln for ln in proc.output.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def tf_kit(tmp_path_factory) -> Path:
    """The transfusion-tiny kit (random weights, the synthetic scan of seed 0: 8000 voxels), with the node's files."""
    kit = tmp_path_factory.mktemp("tf_kit") / "kit"
    code, lines = _cli("trt-kit", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights",
                       "--params", str(PARAMS[0]), "--params", str(PARAMS[1]), "--out", str(kit), "--quiet")
    assert code == 0, lines
    return kit


@pytest.fixture(scope="module")
def tf_fix(tmp_path_factory) -> tuple[Path, Path]:
    """(a real `cpdebug fix --recipe transfusion` folder, its checkpoint): the planted cross-attention
    (tests/recipes/transfusion/planted.py), the cheapest fix that keeps something — one frame, verified on it, the
    two nodes the full ranking keeps as the only candidates (tests/fix/test_fix_transfusion.py runs a fuller one),
    held-out frame 3 (1,495 voxels, the fewest of the first ten)."""
    root = tmp_path_factory.mktemp("tf_fix")
    ckpt = planted_checkpoint(root / "planted.pth", "attention")
    out = root / "fix"
    code, lines = _cli("fix", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--checkpoint", str(ckpt),
                       "--backends", "torch,ort-cpu-fp16", "--n", "1", "--first-scene", "3",
                       "--verify-n", "0", "--search-nodes", ",".join(f"{STAGE}.onnx:{n}" for n in KEPT),
                       "--out", str(out), "--quiet")
    assert code == 0, lines
    return out, ckpt


@pytest.fixture(scope="module")
def tf_fix_kit(tf_fix, tmp_path_factory) -> Path:
    """The kit of that fix (`--fix DIR`) with the node's files: the planted model's reference on the seed-0 scan."""
    fix, ckpt = tf_fix
    kit = tmp_path_factory.mktemp("tf_fix_kit") / "kit"
    code, lines = _cli("trt-kit", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--checkpoint", str(ckpt),
                       "--params", str(PARAMS[0]), "--params", str(PARAMS[1]), "--fix", str(fix), "--out", str(kit),
                       "--quiet")
    assert code == 0, lines
    said = " ".join(" ".join(lines).split())
    assert "transfusion.onnx FP16 with 2 node(s) kept in FP32 through explicit Casts" in said, said
    assert "(pts_bbox_head.decoder.0.cross_attn.attn); its verification in ONNX Runtime holds" in said, said
    return kit


def test_the_kit_holds_autowares_one_graph_with_the_nodes_profile_and_precision(tf_kit):
    m = kf.open_kit(tf_kit).manifest  # the manifest validates (schema, keys) and every file matches its sha256
    assert m.precisions == ("fp16",) and m.held_precision == "fp32"  # trt_precision: fp16, the export is FP32
    assert [s.name for s in m.stages] == [STAGE] and m.source["recipe"] == "transfusion"
    st = m.stages[0]
    assert [t.name for t in st.inputs] == ["voxels", "num_points", "coors"]
    assert [t.name for t in st.outputs] == ["cls_score0", "bbox_pred0", "dir_cls_pred0"]
    lo, opt, hi = VOXELS_NUM  # transfusion_config.hpp / transfusion_trt.cpp: axis 0 of every input at voxels_num
    assert m.profile[STAGE] == {"voxels": {"min": [lo, 20, 5], "opt": [opt, 20, 5], "max": [hi, 20, 5]},
                                "num_points": {"min": [lo], "opt": [opt], "max": [hi]},
                                "coors": {"min": [lo, 4], "opt": [opt, 4], "max": [hi, 4]}}
    fid = m.frames[0].id
    n = st.inputs[0].shapes[fid][0]
    assert lo <= n <= hi and st.outputs[0].shapes[fid] == (1, 5, 40)  # transfusion-tiny: 40 proposals
    graph = onnx.load(str(tf_kit / "transfusion.onnx"), load_external_data=False).graph
    assert all(i.type.tensor_type.shape.dim[0].dim_param == "voxels_num" for i in graph.input)
    half = onnx.load(str(tf_kit / "fp16" / "transfusion.onnx"), load_external_data=False)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in half.graph.initializer)
    with np.load(tf_kit / kf.onnx_inputs(fid, STAGE)) as npz:  # what `bisect --onnx … --inputs` reads
        for t in st.inputs:
            assert kf.array_sha256(npz[t.name]) == t.sha256[fid]
    readme = (tf_kit / kf.README).read_text()
    assert f"min {lo}, opt {opt}, max {hi}" in readme and "FP16 builder flag" in readme
    assert f"cpdebug bisect --onnx KIT/transfusion.onnx --inputs KIT/{kf.onnx_inputs(fid, STAGE)}" in readme


def test_the_scripts_parse_and_carry_the_nodes_profile_and_the_frames_shapes(tf_kit):
    m = kf.open_kit(tf_kit).manifest
    fid = m.frames[0].id
    n = m.stages[0].inputs[0].shapes[fid][0]
    trtexec, poly = (tf_kit / kf.TRTEXEC_SCRIPT).read_text(), (tf_kit / kf.POLYGRAPHY_SCRIPT).read_text()
    for name in (kf.TRTEXEC_SCRIPT, kf.POLYGRAPHY_SCRIPT):
        assert subprocess.run(["bash", "-n", str(tf_kit / name)]).returncode == 0
    lo, opt, hi = VOXELS_NUM
    for flag in (f"--minShapes=voxels:{lo}x20x5,num_points:{lo},coors:{lo}x4",
                 f"--optShapes=voxels:{opt}x20x5,num_points:{opt},coors:{opt}x4",
                 f"--maxShapes=voxels:{hi}x20x5,num_points:{hi},coors:{hi}x4",
                 f"--shapes=voxels:{n}x20x5,num_points:{n},coors:{n}x4", "fp16) onnx=fp16/transfusion.onnx;;",
                 f"voxels:$KIT/inputs/{fid}/{STAGE}/voxels.raw", f"cls_score0:$KIT/reference/{fid}/{STAGE}/"):
        assert flag in trtexec, flag
    for flag in (f"--trt-min-shapes 'voxels:[{lo},20,5]' 'num_points:[{lo}]' 'coors:[{lo},4]'",
                 f"--trt-max-shapes 'voxels:[{hi},20,5]' 'num_points:[{hi}]' 'coors:[{hi},4]'"):
        assert flag in poly, flag
    assert "--backends ort,trt-PRECISION@KIT" in trtexec and "--recipe" not in trtexec


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.needs("tensorrt-rtx")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "fix"])
def test_tensorrt_rtx_builds_the_kits_one_graph_over_the_nodes_profile(tf_kit, request, precision):
    """TensorRT-RTX's real builder (ahead of time, on this CPU) on the kit's files and the manifest's profile: `fix`
    is the kit of a real `cpdebug fix --recipe transfusion` (its FP16 file, the planted cross-attention's MatMul and
    Softmax kept in FP32 — and FP32 in the strongly typed network). The engine is not run: TensorRT-RTX's runtime
    needs a GPU of compute capability 8.0, 8.6, 8.9 or 12.x."""
    from cp_debug.backends.trt.trt_build import build_engine
    from cp_debug.backends.trt.trt_library import load_library
    from cp_debug.backends.trt.trt_plan import plan_build
    from cp_debug.kit.scripts import _profile
    from cp_debug.precision.held import file_precision

    lib = load_library("trt-rtx")
    kit = request.getfixturevalue("tf_fix_kit") if precision == "fix" else tf_kit
    m = kf.open_kit(kit).manifest
    profile = _profile(m, STAGE)
    assert {n: (r.min[0], r.opt[0], r.max[0]) for n, r in profile.items()} == dict.fromkeys(profile, VOXELS_NUM)
    p = "fp16" if precision == "fix" else precision
    data = (kit / kf.onnx_path(p, STAGE, m.held_precision)).read_bytes()
    trt = lib.module
    net = trt.Builder(lib.logger().trt_logger).create_network(0)  # strongly typed: TensorRT-RTX's only kind
    parser = trt.OnnxParser(net, lib.logger().trt_logger)
    assert parser.parse(data), [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
    assert {net.get_input(i).name: net.get_input(i).shape[0] for i in range(net.num_inputs)} == dict.fromkeys(
        ("voxels", "num_points", "coors"), -1)  # voxels_num is dynamic in the network the profile covers
    if precision == "fix":  # each kept node's layer computes FP32 in the typed network; the rest of the head FP16
        layers = {net.get_layer(i).name: net.get_layer(i) for i in range(net.num_layers)}
        assert {n: layers[n].get_output(0).dtype for n in KEPT} == dict.fromkeys(KEPT, trt.float32)
        assert layers[ATTN + "MatMul_4"].get_output(0).dtype == trt.float16  # after the Cast back to FP16
    held = file_precision(onnx.load_from_string(data))
    assert held == p  # the kit's fp16 files carry FP16 (the fix's with its Casts): none converted at build
    plan = plan_build(BackendSpec.parse(f"trt-rtx-{p}"), lib.version, held=held)
    assert plan.onnx_transform == "none" and plan.strongly_typed  # every kit file carries its precision
    engine, facts, _ = build_engine(lib, data, plan, profile, what=f"transfusion.onnx ({precision})")
    assert facts.library.startswith("TensorRT-RTX") and facts.layers > 100 and len(engine) == facts.engine_bytes
    assert facts.engine_bytes > 1_000_000 and facts.targets  # built for its default targets (8.x, 12.x)


def test_a_transfusion_fix_goes_in_the_kit_as_it_is_fp16_built_strongly_typed(tf_fix, tf_fix_kit):
    from cp_debug.fix.artifact import kept_fp32_violations

    fix, _ = tf_fix
    m = kf.open_kit(tf_fix_kit).manifest
    assert m.precisions == ("fp16",) and m.held_precision == "fp16"  # the fix's precision, in its file
    assert m.source == {"kind": "fix", "path": str(fix), "recipe": "transfusion"}
    assert m.files[f"{STAGE}.onnx"] == kf.sha256_file(fix / f"{STAGE}.onnx")  # the fix's bytes, not converted
    assert not (tf_fix_kit / "fp16").exists()
    model = onnx.load(str(tf_fix_kit / f"{STAGE}.onnx"))
    assert kept_fp32_violations(model, KEPT) == {}  # the kept nodes compute in FP32 in the kit's file
    trtexec = (tf_fix_kit / kf.TRTEXEC_SCRIPT).read_text()
    assert "fp16) onnx=transfusion.onnx;;" in trtexec and "typed=(--stronglyTyped)" in trtexec
    readme = " ".join((tf_fix_kit / kf.README).read_text().split())
    assert f"the file of `cpdebug fix` ({fix})" in readme and "may run the kept nodes in FP16" in readme


def test_the_targets_results_of_the_one_graph_are_read_back(tf_kit, tmp_path):
    """What `run_polygraphy.sh fp16` (--trt) leaves — the engine's outputs per frame, and ran.sha256 — served by
    `trt-fp16@KIT` for the one graph fed the kit's .npz (as `bisect --onnx KIT/transfusion.onnx --inputs …` does)."""
    from polygraphy.comparator import IterationResult, RunResults

    from cp_debug.backends.kit.kit_runner import KitRunner
    from tests.kit.kit_helpers import copy_kit

    kit = copy_kit(tf_kit, tmp_path / "kit")
    m = kf.open_kit(kit).manifest
    st = m.stages[0]
    runner = "trt-runner-N0-01/01/26-00:00:00"
    outputs = [{t.name: np.fromfile(kit / kf.reference_raw(f.id, STAGE, t.name), dtype=t.dtype).reshape(
        t.shapes[f.id]) * np.float32(1.001) for t in st.outputs} for f in m.frames]
    path = kit / kf.polygraphy_results("fp16", STAGE)
    path.parent.mkdir(parents=True)
    RunResults([(runner, [IterationResult(o, runner_name=runner) for o in outputs])]).save(str(path))
    ran = subprocess.run(["sha256sum", *m.ran_files("fp16")], cwd=kit, capture_output=True, text=True, check=True)
    (kit / kf.ran_file("fp16")).write_text(ran.stdout)
    fid = m.frames[0].id
    with np.load(kit / kf.onnx_inputs(fid, STAGE)) as npz:
        feed = dict(npz)
    with KitRunner(kit / "transfusion.onnx", BackendSpec.parse(f"trt-fp16@{kit}"), ["/pts_bbox_head/TopK"]) as r:
        got = r.infer(feed)
        report = r.precision_report()
    assert set(got) == {t.name for t in st.outputs}
    assert all(np.array_equal(got[k], outputs[0][k]) for k in got)
    assert any("byte for byte" in n for n in report.notes)


def test_bisect_recipe_transfusion_refuses_a_kit_in_one_line_naming_the_way_that_reads_it(tf_kit):
    code, lines = _cli("bisect", "--recipe", "transfusion", "--preset", "transfusion-tiny",
                       "--backends", f"torch,trt-fp16@{tf_kit}")
    assert code == 2 and len(lines) == 1, lines
    assert "proposal selection" in lines[0] and f"--onnx {tf_kit}/transfusion.onnx --inputs" in lines[0]


@pytest.mark.parametrize("case", ["preset", "fix", "fix_recipe", "fix_preset", "fix_int8", "fix_precision",
                                  "precision", "voxels_num", "too_few"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    out = tmp_path / "kit"
    args = ["trt-kit", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--out", str(out)]
    params = tmp_path / "transfusion_ml_package.param.yaml"
    text = PARAMS[1].read_text()
    want = {"preset": "unknown TransFusion preset 'demo'", "fix": "has no fix.json",
            "fix_recipe": "is a fix of centerpoint's files; a transfusion kit takes a `cpdebug fix --recipe",
            "fix_preset": "fixes the transfusion-demo model; give its model options (--preset transfusion-demo",
            "fix_int8": "is a fix of ort-cpu-int8; the TransFusion-L kit takes an FP16 candidate's fix",
            "fix_precision": "--precision fp32: the fix's transfusion.onnx is FP16",
            "precision": "trt_precision = 'int8': the node builds fp16 or fp32",
            "voxels_num": "must be a list of integers", "too_few": "frame seed0 has 8000 voxels, fewer than its min"}
    if case == "preset":
        args[4] = "demo"
    elif case.startswith("fix"):
        fix = tmp_path / "fix"
        fix.mkdir()
        if case != "fix":  # a fix.json as `cpdebug fix` writes it, but of something this kit does not take
            doc = {"schema": "cp_debug.fix/1", "recipe": "transfusion", "preset": "transfusion-tiny", "kind": "fp16",
                   "backends": {"reference": "torch", "candidate": "ort-cpu-fp16"}}
            doc.update({"fix_recipe": {"recipe": "centerpoint", "preset": "demo"}, "fix_preset": {"preset":
                        "transfusion-demo"}, "fix_int8": {"kind": "int8", "backends": {"candidate": "ort-cpu-int8"}},
                        "fix_precision": {}}[case])
            (fix / "fix.json").write_text(json.dumps(doc))
            (fix / "transfusion.onnx").write_bytes(b"")
        args += ["--fix", str(fix), *(["--precision", "fp32"] if case == "fix_precision" else [])]
    elif case == "precision":
        params = tmp_path / "transfusion.param.yaml"
        params.write_text(PARAMS[0].read_text().replace("trt_precision: fp16", "trt_precision: int8"))
        args += ["--params", str(params)]
    else:
        voxels = "[5000, 3.5e4, 60000]" if case == "voxels_num" else "[9000, 10000, 20000]"
        params.write_text(text.replace("[5000, 30000, 60000]", voxels))
        args += ["--params", str(params)]
    code, lines = _cli(*args)
    errors = [ln for ln in lines if ln.startswith("cpdebug: error:")]
    assert code == 2 and len(errors) == 1 and want[case] in errors[0], lines
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".kit")]


def test_a_fix_of_other_weights_is_one_line_exit_2_and_writes_nothing(tf_fix, tmp_path):
    """The fix's file against the kit's model (other random weights here) before the reference runs: the reference
    would be another network's."""
    fix, _ = tf_fix
    out = tmp_path / "kit"
    code, lines = _cli("trt-kit", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--random-weights",
                       "--seed", "1", "--fix", str(fix), "--out", str(out))
    errors = [ln for ln in lines if ln.startswith("cpdebug: error:")]
    assert code == 2 and len(errors) == 1, lines
    assert "weights differ" in errors[0] and "not the model's weights (random (seed 1))" in errors[0], errors
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".kit")]

"""`cpdebug trt-kit --recipe transfusion` (issue 57): TransFusion-L's kit holds Autoware's one graph with the node's
optimization profile (voxels_num of the real transfusion_ml_package.param.yaml) and precision (trt_precision of
transfusion.param.yaml); its scripts parse and carry those shapes; TensorRT-RTX's real builder builds its files at
FP32, FP16 and FP16 with the cross-attention kept in FP32 (built only: no engine runs here, TensorRT-RTX's runtime
needs a GPU); the target's results of the one graph are read back; bad input is one line, exit 2, nothing written.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from cp_debug.backends import kit_files as kf
from cp_debug.backends.spec import BackendSpec

AUTOWARE = Path(__file__).parents[1] / "data" / "autoware"
PARAMS = [AUTOWARE / "transfusion.param.yaml", AUTOWARE / "transfusion_ml_package.param.yaml"]
VOXELS_NUM = (5000, 30000, 60000)  # transfusion_ml_package.param.yaml
STAGE = "transfusion"


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


@pytest.mark.needs("tensorrt-rtx")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "fp16-keep"])
def test_tensorrt_rtx_builds_the_kits_one_graph_over_the_nodes_profile(tf_kit, precision):
    """TensorRT-RTX's real builder (ahead of time, on this CPU) on the kit's files and the manifest's profile:
    `fp16-keep` is the FP16 graph with the decoder's cross-attention kept in FP32 (a keep-FP32 fix's shape). The
    engine is not run: TensorRT-RTX's runtime needs a GPU of compute capability 8.0, 8.6, 8.9 or 12.x."""
    from cp_debug.backends.trt_build import build_engine
    from cp_debug.backends.trt_library import load_library
    from cp_debug.backends.trt_plan import plan_build
    from cp_debug.kit.scripts import _profile
    from cp_debug.precision.fp16 import convert_to_fp16

    lib = load_library("trt-rtx")
    m = kf.open_kit(tf_kit).manifest
    profile = _profile(m, STAGE)
    assert {n: (r.min[0], r.opt[0], r.max[0]) for n, r in profile.items()} == dict.fromkeys(profile, VOXELS_NUM)
    p = precision.split("-")[0]
    model = onnx.load(str(tf_kit / kf.onnx_path("fp32" if precision == "fp16-keep" else p, STAGE, m.held_precision)))
    if precision == "fp16-keep":  # the FP32 file converted with the cross-attention kept
        keep = [n.name for n in model.graph.node if "/decoder.0/cross_attn/" in n.name]
        model = convert_to_fp16(model, keep_fp32_nodes=keep)
        assert len(keep) > 10
    data = model.SerializeToString()
    net = lib.module.Builder(lib.logger().trt_logger).create_network(0)  # strongly typed: TensorRT-RTX's only kind
    parser = lib.module.OnnxParser(net, lib.logger().trt_logger)
    assert parser.parse(data), [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
    assert {net.get_input(i).name: net.get_input(i).shape[0] for i in range(net.num_inputs)} == dict.fromkeys(
        ("voxels", "num_points", "coors"), -1)  # voxels_num is dynamic in the network the profile covers
    plan = plan_build(BackendSpec.parse(f"trt-rtx-{p}"), lib.version)
    assert plan.onnx_transform == "none" if p == "fp32" else "fp16"  # the kit's fp16 file is already FP16
    engine, facts, _ = build_engine(lib, data, plan, profile, what=f"transfusion.onnx ({precision})")
    assert facts.library.startswith("TensorRT-RTX") and facts.layers > 100 and len(engine) == facts.engine_bytes
    assert facts.engine_bytes > 1_000_000 and facts.targets  # built for its default targets (8.x, 12.x)


def test_the_targets_results_of_the_one_graph_are_read_back(tf_kit, tmp_path):
    """What `run_polygraphy.sh fp16` (--trt) leaves — the engine's outputs per frame, and ran.sha256 — served by
    `trt-fp16@KIT` for the one graph fed the kit's .npz (as `bisect --onnx KIT/transfusion.onnx --inputs …` does)."""
    from polygraphy.comparator import IterationResult, RunResults

    from cp_debug.backends.kit_runner import KitRunner
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


@pytest.mark.parametrize("case", ["preset", "fix", "precision", "voxels_num", "too_few"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    out = tmp_path / "kit"
    args = ["trt-kit", "--recipe", "transfusion", "--preset", "transfusion-tiny", "--out", str(out)]
    params = tmp_path / "transfusion_ml_package.param.yaml"
    text = PARAMS[1].read_text()
    want = {"preset": "unknown TransFusion preset 'demo'", "fix": "writes no TransFusion one graph",
            "precision": "trt_precision = 'int8': the node builds fp16 or fp32",
            "voxels_num": "must be a list of integers", "too_few": "frame seed0 has 8000 voxels, fewer than its min"}
    if case == "preset":
        args[4] = "demo"
    elif case == "fix":
        args += ["--fix", str(tmp_path)]
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

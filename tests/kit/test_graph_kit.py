"""`cpdebug trt-kit --torch FILE.py:FUNC | --onnx FILE` (issue 110, items 4 and 5): the kit of any one-graph model —
its samples, trtexec's and polygraphy's min/opt/max shapes from the samples or the range given — run on "the target"
by its own polygraphy script with ONNX Runtime in TensorRT's place (`--onnxrt`: the real polygraphy CLI writing real
RunResults), read back by bisect as CenterPoint's kit is; and two kits' results of one file compared with each other
(`bisect --backends trt-fp32@KIT_A,trt-fp16@KIT_B`), naming the first layer whose output moved. TensorRT never runs
here; TensorRT-RTX's builder builds the kit's file over its profile (built only: its runtime needs a GPU).

The model (`planted_graph.py`) overflows FP16 at `boost` and nowhere before it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cp_debug.backends.kit import kit_files as kf
from tests.kit.kit_helpers import copy_kit

PLANTED = Path(__file__).parent / "planted_graph.py"
BOOST = "/boost/Conv"


def _cli(*args: str):
    """(exit code, non-empty output lines) of `cpdebug ARGS` in this process."""
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    proc = CliRunner().invoke(app, [str(a) for a in args])
    return proc.exit_code, [ln for ln in proc.output.splitlines() if ln.strip()]


def _run_polygraphy(kit: Path, precision: str) -> None:
    proc = subprocess.run(["bash", str(kit / kf.POLYGRAPHY_SCRIPT), precision, "--onnxrt"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the planted model as an ONNX file with a dynamic batch axis, a sample of batch 1, one of batch 3)."""
    from tests.kit.planted_graph import export_dynamic

    root = tmp_path_factory.mktemp("graph_kit")
    export_dynamic(root / "planted.onnx")
    rng = np.random.default_rng(2)
    paths = []
    for name, batch in (("one", 1), ("three", 3)):
        np.savez(root / f"{name}.npz", x=rng.standard_normal((batch, 3, 16, 16)).astype(np.float32))
        paths.append(root / f"{name}.npz")
    return root / "planted.onnx", paths[0], paths[1]


@pytest.fixture(scope="module")
def onnx_kits(samples, tmp_path_factory) -> tuple[Path, Path]:
    """Two kits of the one dynamic file and its two samples (the range given: batch 1..8): A run at FP32, B at FP16,
    each by its own polygraphy script with ONNX Runtime in TensorRT's place — two targets, one file."""
    onnx_file, one, three = samples
    root = tmp_path_factory.mktemp("two_kits")
    kits = []
    for name, precision in (("a", "fp32"), ("b", "fp16")):
        kit = root / name
        code, lines = _cli("trt-kit", "--onnx", onnx_file, "--inputs", one, "--inputs", three, "--min-shapes",
                           "x:1x3x16x16", "--max-shapes", "x:8x3x16x16", "--precision", "fp32", "--precision", "fp16",
                           "--out", kit, "--quiet")
        assert code == 0, lines
        _run_polygraphy(kit, precision)
        kits.append(kit)
    return kits[0], kits[1]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_the_kit_carries_the_samples_and_trtexecs_shapes_over_the_range(onnx_kits, samples):
    from polygraphy.json import load_json

    kit = onnx_kits[0]
    m = kf.open_kit(kit).manifest  # every listed file checked against its sha256
    assert [f.token for f in m.frames] == ["one", "three"] and m.source["kind"] == "onnx"
    assert (kit / "planted.onnx").read_bytes() == samples[0].read_bytes()  # the file as given
    r = m.profile["planted"]["x"]
    assert (r["min"], r["opt"], r["max"]) == ([1, 3, 16, 16], [3, 3, 16, 16], [8, 3, 16, 16])  # opt: the largest
    trtexec = (kit / kf.TRTEXEC_SCRIPT).read_text()
    for flag in ("--minShapes=x:1x3x16x16", "--optShapes=x:3x3x16x16", "--maxShapes=x:8x3x16x16",
                 "--shapes=x:1x3x16x16", "--shapes=x:3x3x16x16", "--loadRefOutputs="):
        assert flag in trtexec, flag
    poly = (kit / kf.POLYGRAPHY_SCRIPT).read_text()
    assert "--trt-min-shapes 'x:[1,3,16,16]'" in poly and "--trt-max-shapes 'x:[8,3,16,16]'" in poly
    feeds = load_json(str(kit / kf.polygraphy_inputs("planted")))
    for fr, feed in zip(m.frames, feeds):  # trtexec's raw file, polygraphy's feed and bisect's .npz: the same bytes
        raw = np.fromfile(kit / kf.input_raw(fr.id, "planted", "x"), dtype=np.float32).reshape(feed["x"].shape)
        assert np.array_equal(raw, feed["x"]) and np.array_equal(np.load(kit / fr.points)["x"], raw)
    assert "--onnx KIT/planted.onnx --inputs KIT/inputs/frame_000/planted.npz --backends ort,trt-PRECISION@KIT" \
        in trtexec
    for name in (kf.TRTEXEC_SCRIPT, kf.POLYGRAPHY_SCRIPT):
        assert subprocess.run(["bash", "-n", str(kit / name)]).returncode == 0
    readme = (kit / kf.README).read_text()  # issue 117: the Layout names the folders the kit has, no `frames/`
    assert not (kit / "frames").exists() and "frames/<frame>.npy" not in readme
    assert "inputs/<frame>/<stage>.npz" in readme


@pytest.mark.needs("tensorrt-rtx")
def test_tensorrt_rtx_builds_the_kits_file_over_its_profile(onnx_kits):
    """TensorRT-RTX's real builder (ahead of time, on this CPU) takes the kit's FP16 file with the manifest's
    profile, batch 1..8 (the engine is not run: its runtime needs a GPU)."""
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.backends.trt.trt_build import build_engine
    from cp_debug.backends.trt.trt_library import load_library
    from cp_debug.backends.trt.trt_plan import plan_build
    from cp_debug.kit.scripts import _profile

    lib = load_library("trt-rtx")
    kit = onnx_kits[1]
    m = kf.open_kit(kit).manifest
    data = (kit / kf.onnx_path("fp16", "planted", m.held_precision)).read_bytes()
    plan = plan_build(BackendSpec.parse("trt-rtx-fp16"), lib.version, held="fp16")
    engine, facts, _ = build_engine(lib, data, plan, _profile(m, "planted"), what="planted.onnx (fp16)")
    assert facts.library.startswith("TensorRT-RTX") and len(engine) == facts.engine_bytes > 0


def test_bisect_reads_any_models_kit_back_and_names_the_planted_layer(samples, tmp_path):
    """`--torch`: the kit holds the export bisect makes, so `bisect --torch … -b torch,trt-fp16@KIT` (the command
    the README gives) reads the target's tensors under its own probes and names `boost`."""
    kit = tmp_path / "kit"
    code, lines = _cli("trt-kit", "--torch", f"{PLANTED}:build", "--inputs", samples[1], "--out", kit, "--quiet")
    assert code == 0, lines
    m = kf.open_kit(kit).manifest
    assert m.source["kind"] == "torch" and m.profile["planted_graph"]["x"]["max"] == [1, 3, 16, 16]  # static
    _run_polygraphy(kit, "fp16")
    report = tmp_path / "run.json"
    code, lines = _cli("bisect", "--torch", f"{PLANTED}:build", "--inputs",
                       kit / kf.onnx_inputs("frame_000", "planted_graph"), "--backends", f"torch,trt-fp16@{kit}",
                       "--no-noise-floor", "--json", report, "--quiet")
    assert code == 1, lines
    doc = json.loads(report.read_text())
    assert doc["first_divergent"][f"trt-fp16@{kit}"] == "boost"
    assert doc["root_cause"][f"trt-fp16@{kit}"]["probe"] == "boost"


def test_two_kits_of_one_file_name_the_layer_that_moved(onnx_kits, tmp_path):
    """Target A ran the file at FP32, target B at FP16 (real polygraphy runs, ONNX Runtime standing in for TensorRT):
    compared with each other, A the reference, the first tensor that moved is `boost`'s output (B overflows), on
    both samples; every tensor before it is within FP16's budget. Polygraphy's results carry no layer information,
    and each side says so."""
    a, b = onnx_kits
    out = tmp_path / "targets.json"
    code, lines = _cli("bisect", "--backends", f"trt-fp32@{a},trt-fp16@{b}", "--json", out)
    assert code == 1, lines
    [cmp] = json.loads(out.read_text())["comparisons"]
    assert cmp["reference"] == f"trt-fp32@{a}" and cmp["file"] == "fp16/planted.onnx"
    first = cmp["first_moved"]
    assert (first["node"], first["op_type"], first["diff"]["status"]) == (BOOST, "Conv", "inf")
    assert [f["first_moved"]["node"] for f in cmp["frames"]] == [BOOST, BOOST]
    assert all("no layer information" in first["layers"][k]["why_none"] for k in first["layers"])
    assert any(f"first moved: {first['tensor']} (node {BOOST}, Conv" in ln for ln in lines)
    code, lines = _cli("bisect", "--backends", f"trt-fp32@{a},trt-fp32@{b}")  # no results of fp32 in B
    assert code == 2 and "holds no results for fp32" in lines[-1]


def test_layer_info_of_both_targets_is_named_where_their_kits_carry_it(onnx_kits, tmp_path):
    """Both targets' results as `run_trtexec.sh` leaves them (the values of each kit's polygraphy run, written as
    trtexec writes them by tests/backends/trtexec_writer.py, with an engine's `--exportLayerInfo`): A ran `boost` in
    FP32 (as TensorRT 10 may where the file is built weakly typed), B in FP16; the report names each target's
    layer, its precision and tactic."""
    from cp_debug.backends.trt.trt_dumps_polygraphy import read_polygraphy_results
    from tests.backends.trtexec_writer import write_debug_dumps, write_export_output, write_layer_info

    kits = {}
    for name, kit, precision, ran in (("a", onnx_kits[0], "fp32", "FP32"), ("b", onnx_kits[1], "fp16", "FP16")):
        kit = copy_kit(kit, tmp_path / name)
        m = kf.open_kit(kit).manifest
        [(_, iterations)] = read_polygraphy_results(kit / kf.polygraphy_results(precision, "planted"))
        for fr, values in zip(m.frames, iterations):
            run = kit / kf.trtexec_results(precision, fr.id, "planted")
            conv = [n for n in values if n.startswith("/boost/")]
            write_debug_dumps(run, [(n, v, "HALF" if v.dtype == np.float16 else "FLOAT") for n, v in values.items()],
                              summary=True, cmdline="trtexec --saveAllDebugTensors=numpy,summary")
            fmt = f"Row major linear {ran}"
            write_layer_info(run / kf.TRTEXEC_LAYERS, [
                {"name": BOOST, "type": "CaskConvolution", "inputs": [("/act/Relu_output_0", (1,), fmt)],
                 "outputs": [(n, values[n].shape, fmt) for n in conv], "onnx": [BOOST]}], ["x", "y"])
            write_export_output(run / kf.TRTEXEC_OUTPUTS, [("y", values["y"])])
        kits[name] = kit
    code, lines = _cli("bisect", "--backends", f"trt-fp32@{kits['a']},trt-fp16@{kits['b']}")
    assert code == 1, lines
    layer_lines = [ln for ln in lines if f"layer '{BOOST}' (CaskConvolution" in ln]
    assert len(layer_lines) == 2 and "FP32" in layer_lines[0] and "FP16" in layer_lines[1]


def test_bad_input_is_one_line_and_writes_nothing(samples, onnx_kits, tmp_path):
    onnx_file, one, three = samples
    out = tmp_path / "kit"
    for args, words in (
            (["--min-shapes", "x:1x3x16x16"], "--min-shapes and --max-shapes give 'x' together"),
            (["--min-shapes", "x:1x3x8x16", "--max-shapes", "x:8x3x16x16"], "axis 2 of 'x' is fixed at 16"),
            (["--min-shapes", "x:2x3x16x16", "--max-shapes", "x:8x3x16x16"], "sample one"),
            (["--max-shapes", "y:1x3"], "the graph's inputs are 'x'"),
            (["--min-shapes", "x=1x3"], "no ':' between the input's name and its shape"),
            (["--min-shapes", "x:1x3x16x16", "--min-shapes", "x:2x3x16x16"], "names input 'x' twice"),
            (["--points", one], "--points: a kit of a --torch / --onnx model takes its samples")):
        code, lines = _cli("trt-kit", "--onnx", onnx_file, "--inputs", one, "--inputs", three, *args, "--out", out)
        assert code == 2 and words in lines[-1] and len(lines) == 1, (args, lines)
        assert not out.exists() and not list(tmp_path.glob(".kit.*"))
    other = tmp_path / "other"  # a kit of another file: two targets are compared on one file
    code, lines = _cli("trt-kit", "--torch", f"{PLANTED}:build", "--precision", "fp32", "--out", other, "--quiet")
    assert code == 0, lines
    _run_polygraphy(other, "fp32")
    code, lines = _cli("bisect", "--backends", f"trt-fp32@{onnx_kits[0]},trt-fp32@{other}")
    assert code == 2 and "takes kits of one graph, the same in both" in lines[-1], lines


def test_a_file_with_external_data_keeps_its_weights_beside_it_in_the_kit(samples, tmp_path):
    """An --onnx file whose weights are onnx's external data (as any file past 2 GiB is): the kit writes them in
    `<stage>.onnx.data` beside its file, the target's run hashes it with the file it read, and polygraphy runs it."""
    import onnx

    given = tmp_path / "given"
    given.mkdir()
    onnx.save(onnx.load(str(samples[0])), str(given / "big.onnx"), save_as_external_data=True,
              location="weights.bin", size_threshold=64)
    kit = tmp_path / "kit"
    code, lines = _cli("trt-kit", "--onnx", given / "big.onnx", "--inputs", samples[1], "--precision", "fp32",
                       "--out", kit, "--quiet")
    assert code == 0, lines
    m = kf.open_kit(kit).manifest
    assert m.onnx_data == ("big.onnx.data",) and "big.onnx.data" in m.ran_files("fp32")
    from onnx.numpy_helper import to_array

    ours, theirs = (onnx.load(str(f)).graph.initializer for f in (kit / "big.onnx", given / "big.onnx"))
    assert {t.name: to_array(t).tobytes() for t in ours} == {t.name: to_array(t).tobytes() for t in theirs}
    _run_polygraphy(kit, "fp32")
    assert "big.onnx.data" in (kit / kf.ran_file("fp32")).read_text()
    kf.check_ran(kf.open_kit(kit), "fp32")  # the target's run read this kit's weights

"""`cpdebug fix --torch FILE.py:FUNC | --onnx FILE.onnx` on models no one here tuned it for, as a user walks it:
fix → the DIR (fix.json's nodes and modules, the deployable file loading in ONNX Runtime and parsing with
TensorRT-RTX's builder) → `fix --check DIR`; a healthy model needs nothing; INT8 leaves the outlier convs out;
bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug
from tests.zoo import models

pytestmark = pytest.mark.slow  # scheduled first under xdist (tests/conftest.py)

ZOO = Path(models.__file__)
# build_detr_planted: encoder.layers.1's QK^T passes float16's 65504; keeping that MatMul and the Softmax reading
# it in FP32 cures the graph (the Softmax's FP16 input would overflow through its Cast otherwise)
ATTENTION = "encoder.layers.1.self_attn"


def _fix(out: Path, *args) -> tuple[dict, str]:
    proc = cpdebug("fix", *args, "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads((out / "fix.json").read_text()), proc.stdout


def _check(out: Path) -> None:
    proc = cpdebug("fix", "--check", out, "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "holds here" in proc.stdout


def _attention_fixed(doc: dict) -> None:
    s = doc["set"]
    assert doc["status"] == "found" and doc["kind"] == "fp16" and doc["held_out_verification"]
    assert sorted(n["op_type"] for n in s["nodes"]) == ["MatMul", "Softmax"]
    assert s["modules"] == [ATTENTION] and s["onnx_nodes"] == {"model_fp16.onnx": s["keep_fp32"]}
    v = doc["verification"]
    assert v["holds"] and len(v["samples"]) == 2
    assert all(not x["before"]["passed"] and x["after"]["passed"] for x in v["samples"])  # before/after per sample


@pytest.fixture(scope="module")
def detr_fix(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detr") / "fix"
    doc, shown = _fix(out, "--torch", f"{ZOO}:build_detr_planted")
    _attention_fixed(doc)
    assert f"{ATTENTION}: {doc['set']['keep_fp32'][0]}" in shown
    return out


def test_a_planted_attention_overflow_is_fixed_written_and_checked(detr_fix):
    files = {p.name for p in detr_fix.iterdir()}
    assert {"model_fp16.onnx", "model_fp32.onnx", "fix.json", "README.md", "nodes_to_exclude.json",
            "verify_random_2.npz", "verify_random_3.npz"} == files
    assert "--stronglyTyped" in (detr_fix / "README.md").read_text()
    _check(detr_fix)


def test_the_written_fp16_file_loads_in_onnxruntime_and_keeps_its_nodes_fp32(detr_fix):
    import onnxruntime as ort

    from cp_debug.fix.artifact import kept_fp32_violations

    doc = json.loads((detr_fix / "fix.json").read_text())
    import onnx

    model = onnx.load(str(detr_fix / "model_fp16.onnx"))
    assert kept_fp32_violations(model, doc["set"]["keep_fp32"]) == {}
    assert any(n.op_type == "Cast" for n in model.graph.node)
    sess = ort.InferenceSession(str(detr_fix / "model_fp16.onnx"), providers=["CPUExecutionProvider"])
    with np.load(detr_fix / "verify_random_2.npz") as z:
        out = sess.run(None, {k: z[k] for k in z.files})
    assert all(np.isfinite(o).all() for o in out)


def test_the_written_fp16_file_parses_and_builds_with_tensorrt_rtx(detr_fix, tmp_path):
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.backends.trt.trt_library import load_library
    from cp_debug.backends.trt.trt_runner import TrtRunner
    from cp_debug.errors import BackendUnavailableError

    try:
        load_library("trt-rtx")
    except BackendUnavailableError as err:
        pytest.skip(f"TensorRT-RTX not installed here, not run: {err}")
    r = TrtRunner(detr_fix / "model_fp16.onnx", BackendSpec.parse("trt-rtx-fp32"), cache_dir=tmp_path)
    facts = r.build()
    assert facts.layers > 10 and facts.engine_bytes > 10_000
    assert r.settings()["build_plan"]["strongly_typed"]  # the file's own Casts say what runs FP32


def test_a_dynamo_onnx_file_is_fixed_the_same(tmp_path):
    import torch

    net, example = models.build_detr_planted()
    path = tmp_path / "detr.onnx"
    torch.onnx.export(net, example, dynamo=True, verbose=False).save(str(path))
    doc, _ = _fix(tmp_path / "fix", "--onnx", path)
    _attention_fixed(doc)  # the modules come from the dynamo file's own scope metadata
    _check(tmp_path / "fix")


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_a_healthy_model_needs_nothing_and_is_still_verified(tmp_path):
    doc, shown = _fix(tmp_path / "fix", "--torch", f"{ZOO}:build_detr")
    assert doc["status"] == "not_needed" and doc["set"]["keep_fp32"] == [] and doc["verification"]["holds"]
    assert "nothing to fix" in shown
    _check(tmp_path / "fix")


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_int8_leaves_the_outlier_convs_out_on_the_users_samples(tmp_path):
    net, (x,) = models.build_resnet_int8_planted()
    folder = tmp_path / "samples"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(3):  # one sample per .npz, keyed input0: two searched, one held out
        np.savez(folder / f"s{k}.npz", input0=rng.standard_normal(tuple(x.shape)).astype(np.float32))
    doc, _ = _fix(tmp_path / "fix", "--torch", f"{ZOO}:build_resnet_int8_planted", "--backends", "ort-cpu-int8",
                  "--inputs", folder, "--verify-n", 1)
    s = doc["set"]
    assert doc["status"] == "found" and doc["kind"] == "int8" and doc["verification"]["holds"]
    assert "layer2.0.bn2" in s["modules"]  # conv2 of layer2.0 (BN folded in) reads the outlier channels
    assert s["modelopt"]["nodes_to_exclude"] == s["onnxruntime"]["nodes_to_exclude"] == s["nodes_to_exclude"]
    assert s["modelopt"]["command"].endswith(" ".join(s["nodes_to_exclude"]))
    assert doc["search_frames"]["search"] == ["s0", "s1"] and doc["search_frames"]["verify"] == ["s2"]
    assert (tmp_path / "fix" / "model_int8.onnx").is_file()
    _check(tmp_path / "fix")


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    gone = cpdebug("fix", "--onnx", tmp_path / "missing.onnx", "--out", tmp_path / "a")
    assert gone.returncode == 2 and gone.stderr.strip().count("\n") == 0 and "missing.onnx" in gone.stderr
    folder = tmp_path / "samples"
    folder.mkdir()
    np.savez(folder / "wrong.npz", pixels=np.zeros((1, 3, 32, 32), np.float32))
    proc = cpdebug("fix", "--torch", f"{ZOO}:build_detr", "--inputs", folder, "--out", tmp_path / "b", "--quiet")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "wrong.npz" in proc.stderr and "'pixels'" in proc.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_samples_from_a_data_function_on_the_text_model(tmp_path):
    data = tmp_path / "data.py"
    data.write_text("import numpy as np\n\ndef load_data():\n    rng = np.random.default_rng(5)\n"
                    "    for _ in range(2):\n        yield {'ids': rng.integers(0, 48, size=(1, 12))}\n")
    doc, _ = _fix(tmp_path / "fix", "--torch", f"{ZOO}:build_text_planted", "--data", f"{data}:load_data")
    assert doc["search_frames"]["search"] == ["data_0"] and doc["search_frames"]["verify"] == ["data_1"]
    assert doc["verification"]["holds"] and doc["set"]["modules"] == ["blocks.1.attn"]


def test_a_missing_quantizer_is_said_before_the_search(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime.quantization", None)  # import fails
    proc = cpdebug("fix", "--torch", f"{ZOO}:build_resnet_int8_planted", "--backends", "ort-cpu-int8",
                   "--out", tmp_path / "fix")
    assert proc.returncode == 3 and proc.stderr.strip().count("\n") == 0 and "quantizer" in proc.stderr
    assert "loading the model" not in proc.stdout + proc.stderr and not (tmp_path / "fix").exists()


def test_a_metric_is_reported_before_and_after_and_checked_again(tmp_path):
    """The classifier whose FP16 Linear overflows on 3 of 12 samples (s02, s05 searched; s09 held out): top-1
    agreement below 1 before the fix, 1 after, each overflowing sample named in its part; fix.json valid against
    its schema; `fix --check` computes the metric again."""
    import jsonschema

    from tests.zoo import classifier

    folder = tmp_path / "samples"
    folder.mkdir()
    rng = np.random.default_rng(0)
    large = ("s02", "s05", "s09")
    for k in range(12):
        x = rng.standard_normal((1, classifier.FEATURES)).astype(np.float32)
        np.savez(folder / f"s{k:02d}.npz", input0=x * (400 if f"s{k:02d}" in large else 1))
    out = tmp_path / "fix"
    proc = cpdebug("fix", "--torch", f"{Path(classifier.__file__)}:build_overflow", "--inputs", folder, "--metric",
                   "top1", "--out", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((out / "fix.json").read_text())
    schema = json.loads((Path(__file__).parents[2] / "docs" / "schemas" / "fix.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert classifier.OVERFLOW_LAYER in doc["set"]["modules"]  # and what reads its large output
    held, search = doc["metric"]["held_out"], doc["metric"]["search"]
    assert doc["metric"]["name"] == "top1" and held["reference"] == 1.0
    assert held["before"] < 1 and held["after"] == 1.0 and held["changed_after"] == []
    assert held["changed_before"] == ["s09"] and search["changed_before"] == ["s02", "s05"]
    assert search["before"] < 1 and search["after"] == 1.0
    assert "top1 on 6 held-out sample(s)" in proc.stdout and "s09 changed" in proc.stdout
    again = cpdebug("fix", "--check", out, "--json", "-", "--quiet")
    assert again.returncode == 0, again.stderr[-2000:]
    check = json.loads(again.stdout)
    assert check["metric"]["held_out"]["after"] == 1.0 and check["changed_figures"] == []
    refused = cpdebug("fix", "--check", out, "--metric", "top1")
    assert refused.returncode == 2 and "--metric goes with --torch / --onnx" in refused.stderr

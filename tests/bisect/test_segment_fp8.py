"""FP8's own reasons and cures (issue 86, items 3 and 5; bisect/findings/segment_fp8.py): on a small CNN and a
transformer
block of our own (tests/bisect/fp8_models.py), `-b ort,ort-cpu-fp8` through the CLI — a channel that sets a per-tensor
scale (the rest flushed to zero) and an input beyond the calibrated range, each named at its layer for that reason;
the smallest change verified on the segment (per-channel weights before leaving a layer out) and the advice's flag
verified again by the bisect it names; healthy models within FP8."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.bisect import fp8_models as fm
from tests.cli_run import cpdebug


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("fp8why")
    out = {name: fm.export(fm.cnn(fault), fm.cnn_example(), folder / f"cnn_{name}.onnx")
           for name, fault in (("healthy", None), ("activation", "activation"), ("weight", "weight"))}
    for name, fault in (("block", True), ("block_healthy", False)):
        out[name] = fm.export(fm.block(fault), fm.block_input(), folder / f"{name}.onnx")
    np.savez(folder / "calib_small.npz", x=fm.cnn_input(0.05, n=4, seed=3))
    np.savez(folder / "big.npz", x=fm.cnn_input(3.0, seed=4))
    out["folder"] = folder
    return out


def _bisect(tmp_path, *args):
    proc = cpdebug("bisect", "-b", "ort,ort-cpu-fp8", "--json", tmp_path / "r.json", "--quiet", *args)
    assert proc.returncode in (0, 1, 4), proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.returncode, json.loads((tmp_path / "r.json").read_text())


def _cause(report) -> dict:
    return report["root_cause"]["ort-cpu-fp8"] or {}


def test_an_outlier_activation_channel_flushing_the_rest_is_named_and_its_cure_verified(files, tmp_path):
    rc, report = _bisect(tmp_path, "--onnx", files["activation"])
    cause = _cause(report)
    assert rc == 1 and cause["probe"] == fm.CNN_CONV2, report["root_cause"]
    hint = cause["hint"]
    assert "FP8 flush at" in hint and "its input '/body/body.1/Relu_output_0'" in hint, hint
    assert "1 outlier channel of 16" in hint and "round to zero" in hint, hint
    assert "verified: within precision with" in hint and "left out of FP8" in hint, hint
    # the local error split: all of it FP8's rounding (the CPU provider is the emulation: no arithmetic of its own)
    assert "of its local error, FP8 rounding itself: 0.9" in hint and "no arithmetic of its own" in hint, hint
    flag = hint.split("--exclude-int8 ")[1].split(")")[0]
    assert flag == "/body/body.2/Conv", hint
    # the advice, as the bisect it names: within FP8 with that one conv left out
    rc, report = _bisect(tmp_path, "--onnx", files["activation"], "--exclude-int8", flag)
    assert rc == 0 and report["outcome"] == "within_precision", report["root_cause"]
    assert "ran 3 of 4 Conv/Gemm nodes on FP8" in " ".join(report["precision"]["ort-cpu-fp8"]["notes"])


def test_one_output_channel_setting_the_weight_scale_is_cured_per_channel(files, tmp_path):
    rc, report = _bisect(tmp_path, "--onnx", files["weight"])
    hint = _cause(report)["hint"]
    assert rc == 1 and _cause(report)["probe"] == fm.CNN_CONV2, report["root_cause"]
    assert "its weight 'body.2.weight'" in hint and "1 outlier output channel of 32" in hint, hint
    # the smallest change first: one scale per output channel keeps the other channels' weights
    assert "verified: within precision with per-channel FP8 weights for" in hint, hint
    assert "--exclude-int8" not in hint


def test_an_input_beyond_the_calibrated_range_is_named_at_the_first_layer(files, tmp_path):
    folder = files["folder"]
    rc, report = _bisect(tmp_path, "--onnx", files["healthy"], "--calib", folder / "calib_small.npz",
                         "--inputs", folder / "big.npz")
    cause = _cause(report)
    # beyond FP8 from the first conv on, no layer's own error beyond its siblings': degraded (4) or diverged (1)
    assert rc in (1, 4) and cause["probe"] == fm.CNN_CONV0, report["root_cause"]
    hint = cause["hint"]
    assert "the calibration set does not cover this input: 'x' is calibrated at" in hint, hint
    reach = float(hint.split("× its range")[0].rsplit("(", 1)[1])
    assert reach > 20, hint  # an input 60× the calibration's spread: far beyond its max
    assert "saturate" in hint
    # the intervention's restorations said in the candidate's own precision (issue 115): left out of FP8, not INT8
    assert "(1 node(s) left out of FP8)" in hint and "alone in FP8 (every other node left out of FP8)" in hint, hint
    assert "INT8" not in hint, hint
    # a set that restores every compute node comes back by not converting the model: never "the best" set (0×)
    tried = cause["intervention"]["tried"]
    whole = [t for t in tried if t["whole"]]
    assert whole and not any(t["back"] for t in whole), tried
    best = min(t["output_error_after"]["ratio"] for t in tried if isinstance(t["candidate"], list) and not t["whole"])
    assert f"the best {best:.3g}× ({len(whole)} of them every compute node restored" in hint, hint


def test_healthy_models_are_within_fp8(files, tmp_path):
    for name in ("healthy", "block_healthy"):
        rc, report = _bisect(tmp_path, "--onnx", files[name])
        assert rc == 0 and report["outcome"] == "within_precision", (name, report["root_cause"])


def test_a_transformer_blocks_outlier_feature_is_named_at_the_linear_that_reads_it(files, tmp_path):
    rc, report = _bisect(tmp_path, "--onnx", files["block"])
    cause = _cause(report)
    assert rc == 1 and cause["probe"] == "/fc1/MatMul_output_0", report["root_cause"]
    hint = cause["hint"]
    assert "FP8 flush at" in hint and "'/ln2/LayerNormalization_output_0'" in hint, hint
    assert "1 outlier channel of 32" in hint and "verified: within precision with" in hint, hint


def test_the_ladders_variants_are_written_as_modelopt_writes_them(files):
    """Per-channel weights: one float32 scale and one float8 zero point per output channel, DequantizeLinear's
    `axis` 0 (ModelOpt's ONNX path); a node left out reads float32 inputs, its weight stays float32."""
    from cp_debug.precision.fp8 import quantize_fp8

    model = onnx.load(files["healthy"])
    feed = [{"x": fm.cnn_input()}]
    per = quantize_fp8(model, feed, per_channel_nodes=["/body/body.2/Conv"]).model
    inits = {i.name: i for i in per.graph.initializer}
    dq = next(n for n in per.graph.node if n.name == "body.2.weight_DequantizeLinear")
    assert [a.i for a in dq.attribute if a.name == "axis"] == [0]
    assert list(inits["body.2.weight_fp8_scale"].dims) == [32]
    assert inits["body.2.weight_fp8_zero_point"].data_type == onnx.TensorProto.FLOAT8E4M3FN
    assert list(inits["body.0.weight_fp8_scale"].dims) == []  # the others stay per tensor
    out = quantize_fp8(model, feed, exclude_nodes=["/body/body.2/Conv"]).model
    conv = next(n for n in out.graph.node if n.name == "/body/body.2/Conv")
    assert conv.input[:2] == ["/body/body.1/Relu_output_0", "body.2.weight"], conv.input


def test_fix_leaves_the_flushed_conv_out_of_fp8_writes_modelopts_lists_and_checks_again(files, tmp_path):
    """`cpdebug fix -b ort-cpu-fp8` (issue 86, item 5): the 1-minimal set searched on some samples and verified on the
    held-out others is the one conv the bisect names; fix.json holds it as ModelOpt's nodes_to_exclude (and its
    command), model_fp8.onnx is that file (float8 Q/DQ on every other GEMM), and `fix --check` re-verifies it."""
    out = tmp_path / "fix"
    proc = cpdebug("fix", "--onnx", files["activation"], "-b", "ort-cpu-fp8", "--out", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((out / "fix.json").read_text())
    assert doc["kind"] == "fp8" and doc["set"]["nodes_to_exclude"] == ["/body/body.2/Conv"], doc["set"]
    assert doc["runs_on"] == {"given": True, "text": f"--onnx {files['activation']}"}  # what the fix ran on
    assert doc["set"]["modelopt"]["command"].endswith("--quantize_mode=fp8 --nodes_to_exclude /body/body.2/Conv")
    assert doc["verification"]["holds"] is True
    fixed = onnx.load(out / "model_fp8.onnx")
    conv = next(n for n in fixed.graph.node if n.name == "/body/body.2/Conv")
    assert conv.input[1] == "body.2.weight"  # left in float32
    assert onnx.TensorProto.FLOAT8E4M3FN in {i.data_type for i in fixed.graph.initializer}
    assert "left out of FP8" in proc.stdout
    proc = cpdebug("fix", "--check", out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_a_transformer_input_beyond_the_calibration_is_named_where_it_clips(files, tmp_path):
    """The healthy block calibrated on Gaussian tokens, run on tokens with one feature 40 higher: no layer's own
    error stands out (degraded), and the root cause is the first segment whose input the calibrated range clips —
    the attention's projection input after the LayerNorm — with the calibration's fit, not 'no single layer
    dominates' at the largest of six small local errors."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((4, 1, 8, 32)).astype(np.float32))
    x = rng.standard_normal((1, 8, 32)).astype(np.float32)
    x[..., 5] += 40.0
    np.savez(tmp_path / "input.npz", x=x)
    rc, report = _bisect(tmp_path, "--onnx", files["block_healthy"], "--calib", tmp_path / "calib.npz",
                         "--inputs", tmp_path / "input.npz")
    cause = _cause(report)
    assert rc in (1, 4) and cause["probe"].startswith("/attn/"), report["root_cause"]
    hint = cause["hint"]
    assert hint.startswith("the calibration set does not cover this input:"), hint
    assert "saturate" in hint and "no single layer dominates" not in hint, hint


def test_fix_takes_a_batched_calibration_file_as_bisect_does(files, tmp_path):
    """`fix --calib` reads the batched .npz that `bisect --calib` takes ([4,1,3,16,16]: four samples of [1,3,16,16];
    before: 'input x has shape [4, 1, 3, 16, 16], but … expects [1, 3, 16, 16]', issue 85)."""
    np.savez(tmp_path / "calib.npz", x=fm.cnn_input(1.0, n=4, seed=7))
    proc = cpdebug("fix", "--onnx", files["activation"], "-b", "ort-cpu-fp8", "--calib", tmp_path / "calib.npz",
                   "--out", tmp_path / "fix")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "fix" / "fix.json").read_text())
    assert doc["calibration"] == ["calib_0", "calib_1", "calib_2", "calib_3"]
    assert doc["set"]["nodes_to_exclude"] == ["/body/body.2/Conv"]


def test_fix_honours_candidates_or_refuses_a_name_no_node_has(files, tmp_path):
    """`fix --search-nodes` on the any-model path (issue 85, item 2: it was ignored, even a made-up name): the search
    runs over the nodes given, in any form cp_debug prints; a name no node has is one line, exit 2."""
    proc = cpdebug("fix", "--onnx", files["activation"], "-b", "ort-cpu-fp8", "--search-nodes", "madeup_node",
                   "--out", tmp_path / "a")
    assert proc.returncode == 2 and "--search-nodes 'madeup_node': no node" in proc.stderr, proc.stderr[-2000:]
    proc = cpdebug("fix", "--onnx", files["activation"], "-b", "ort-cpu-fp8", "--search-nodes",
                   "/body/body.2/Conv,/body/body.4/Conv", "--out", tmp_path / "b", "--json", tmp_path / "b.json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads((tmp_path / "b.json").read_text())
    assert {c["name"] for c in doc["search"]["candidates"]} == {"/body/body.2/Conv", "/body/body.4/Conv"}
    assert doc["set"]["nodes_to_exclude"] == ["/body/body.2/Conv"]

"""Dynamic axes through `--torch` (issue 110, items 1 and 3), end to end with ONNX Runtime: the token encoder whose FP16
pooled sum passes 65504 only past ~1,600 tokens (tests/zoo/token_encoder.py) swept, bisected and fixed over samples of
64 to 4,096 tokens — the axes inferred from the samples' shapes, declared by `dynamic()` beside `build()` or by
`--dynamic` — and the fix verified at every length, `fix --check` included; a run without samples of another shape
exports as before (static); bad specs are one line (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug
from tests.zoo import token_encoder

ZOO = Path(token_encoder.__file__).parent
PLAIN = f"{ZOO / 'token_encoder.py'}:build"  # no dynamic(): the axes inferred from the samples' shapes
DECLARED = f"{ZOO / 'token_encoder_dynamic.py'}:build"  # dynamic() beside build(): a Dim("seq", min=2, max=8192)
FP16 = ("--backends", "torch,ort-cpu-fp16")


@pytest.fixture(scope="module")
def lengths(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokens")
    token_encoder.write_samples(folder)  # seq0064, seq0512, seq2048, seq4096
    return folder


def test_sweep_over_64_to_4096_tokens_names_the_long_samples_and_pool(lengths, tmp_path):
    out = tmp_path / "sweep"
    proc = cpdebug("sweep", "--torch", PLAIN, "--inputs", lengths, *FP16, "--out", out)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "dynamic axes inferred from the samples' shapes: x:1" in proc.stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["model"]["dynamic"] == {"axes": ["x:1"], "source": "samples"}
    frames = {f["token"]: f["candidates"]["ort-cpu-fp16"] for f in doc["frames"]}
    assert {t: f["outcome"] for t, f in frames.items()} == {
        "seq2048": "diverged", "seq4096": "diverged", "seq0064": "within_precision", "seq0512": "within_precision"}
    assert doc["root_cause_counts"]["counts"] == {"pool": 2}
    report = json.loads((out / "bisect" / "seq4096.json").read_text())
    hint = report["root_cause"]["ort-cpu-fp16"]["hint"]
    assert report["root_cause"]["ort-cpu-fp16"]["probe"] == "pool" and "sum over 4096 elements" in hint


def test_bisect_of_a_long_sample_with_the_files_dynamic_axes(lengths, tmp_path):
    report = tmp_path / "bisect.json"
    proc = cpdebug("bisect", "--torch", DECLARED, "--inputs", lengths / "seq2048.npz", *FP16, "--json", report)
    assert proc.returncode == 1, proc.stderr[-3000:]
    doc = json.loads(report.read_text())
    assert doc["model"]["dynamic"] == {"axes": ["x:1=seq"], "source": "dynamic()"}
    assert doc["root_cause"]["ort-cpu-fp16"]["probe"] == "pool"
    assert "65504" in doc["root_cause"]["ort-cpu-fp16"]["hint"]
    short = tmp_path / "short.json"  # the same graph (a cache hit), a short sample: within FP16
    proc = cpdebug("bisect", "--torch", DECLARED, "--inputs", lengths / "seq0512.npz", *FP16, "--json", short)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_eval_names_the_long_samples_as_changed(lengths, tmp_path):
    out = tmp_path / "eval.json"
    proc = cpdebug("eval", "--torch", DECLARED, "--inputs", lengths, "--metric", "cosine", *FP16, "--json", out)
    assert proc.returncode == 1, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["model"]["dynamic"] == {"axes": ["x:1=seq"], "source": "dynamic()"}
    assert [c["sample"] for c in doc["verdicts"]["ort-cpu-fp16"]["changed"]] == ["seq2048", "seq4096"]


def test_fix_verifies_at_every_length_and_its_check_holds(tmp_path):
    samples = tmp_path / "samples"
    token_encoder.write_samples(samples, per_length=2, seed=1)
    out = tmp_path / "fix"
    proc = cpdebug("fix", "--torch", PLAIN, "--dynamic", "x:1=seq", "--inputs", samples, *FP16, "--out", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "fix.json").read_text())
    assert doc["model"]["dynamic"] == {"axes": ["x:1=seq"], "source": "option"}
    assert "pool" in doc["set"]["modules"]  # its ReduceSum kept in FP32 (and the head it hands Inf to)
    split = doc["search_frames"]
    assert split["held_out"] and [s["shape"] for s in split["shapes"]] == [
        f"x[1,{n},16]" for n in (64, 512, 2048, 4096)]
    shapes = doc["verification"]["shapes"]
    assert [(s["shape"], s["holds"]) for s in shapes] == [(f"x[1,{n},16]", True) for n in (64, 512, 2048, 4096)]
    before = {x["sample"]: x["before"]["passed"] for x in doc["verification"]["samples"]}
    assert before == {"seq0064_1": True, "seq0512_1": True, "seq2048_1": False, "seq4096_1": False}
    graph = onnx.load(out / "model_fp16.onnx")
    assert graph.graph.input[0].type.tensor_type.shape.dim[1].dim_param == "seq"
    assert "per shape: holds (of 4 shapes)" in proc.stdout
    check = cpdebug("fix", "--check", out, "--json", "-")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    checked = json.loads(check.stdout)["verification"]
    assert checked["holds"] and [s["holds"] for s in checked["shapes"]] == [True] * 4


def test_without_samples_of_another_shape_the_export_is_static_as_before(lengths, tmp_path):
    report = tmp_path / "bisect.json"
    same = tmp_path / "example.npz"
    np.savez(same, x=np.random.default_rng(0).standard_normal((1, token_encoder.EXAMPLE_TOKENS, 16), np.float32))
    proc = cpdebug("bisect", "--torch", PLAIN, "--inputs", same, *FP16, "--json", report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(report.read_text())
    assert "dynamic" not in doc["model"] and "dynamic axes" not in proc.stderr
    bad = tmp_path / "rank.npz"  # another rank is no dynamic axis: refused as before
    np.savez(bad, x=np.zeros((64, 16), np.float32))
    proc = cpdebug("bisect", "--torch", PLAIN, "--inputs", bad, *FP16)
    assert proc.returncode == 2 and "input 'x' has shape [64, 16], but build()'s model expects [1, 128, 16]" in \
        proc.stderr.strip().splitlines()[-1]
    np.savez(bad, x=np.zeros((1, 128, 7), np.float32))  # the features axis the embedding's weight fixes: no axis
    proc = cpdebug("bisect", "--torch", PLAIN, "--inputs", bad, *FP16)
    assert proc.returncode == 2 and "has shape [1, 128, 7], but build()'s model expects [1, 128, 16]" in \
        proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("args, said", [
    (("--dynamic", "x"), "--dynamic 'x': give NAME:AXIS[,AXIS]"),
    (("--dynamic", "x:one"), "'one' is no axis number"),
    (("--dynamic", "y:1"), "--dynamic names input 'y': build()'s model takes x"),
    (("--dynamic", "x:3"), "input 'x' has 3 axes (shape [1, 128, 16]), no axis 3"),
    (("--dynamic", "x:1=2seq"), "the axis name '2seq' must be an identifier"),
])
def test_a_bad_dynamic_spec_is_one_line(args, said):
    proc = cpdebug("bisect", "--torch", PLAIN, *args, *FP16)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert said in proc.stderr.strip().splitlines()[-1]


def test_dynamic_goes_with_torch(tmp_path):
    proc = cpdebug("sweep", "--onnx", tmp_path / "m.onnx", "--dynamic", "x:1", "--inputs", tmp_path, "--out",
                   tmp_path / "o")
    assert proc.returncode == 2 and "--dynamic goes with --torch" in proc.stderr

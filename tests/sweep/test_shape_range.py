"""`cpdebug sweep --onnx FILE --min-shapes … --max-shapes …` (issue 110, item 2): a token encoder whose FP16 pooled
sum (ReduceSum over the sequence) passes 65504 only past ~1,600 tokens, exported with a dynamic sequence axis; the
search from 64 to 4,096 tokens on real ONNX Runtime (ort against ort-cpu-fp16) finds the first failing length within
2x of the true one (an FP32 cumulative sum of the encoder's own per-token features says where that is) and the
ReduceSum at it; trtexec's spelling read, and every bad one a single line with exit 2; the search itself on
oracles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cli_run import cpdebug

VOCAB, HIDDEN, PER_TOKEN, FP16_MAX = 50, 8, 41.0, 65504.0


def _encoder():
    import torch
    from torch import nn

    class SumPool(nn.Module):
        def forward(self, x):
            return x.sum(dim=1)

    class TokenEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, HIDDEN)
            self.proj = nn.Linear(HIDDEN, HIDDEN)
            self.pool = SumPool()
            self.head = nn.Linear(HIDDEN, 4)

        def forward(self, ids):
            return self.head(self.pool(self.proj(self.embed(ids))) / 4096.0)

    torch.manual_seed(0)
    net = TokenEncoder().eval()
    with torch.no_grad():  # channel 0 carries ~41 a token whatever the id: the pooled sum passes 65504 near 1,600
        net.proj.weight[0].mul_(0.05)
        net.proj.bias[0] = PER_TOKEN
    return net


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """(the ONNX file with a dynamic `seq` axis, the true first failing length: the first at which the FP32 pooled
    sum of the encoder's per-token features leaves the FP16 range)."""
    import torch

    net = _encoder()
    path = tmp_path_factory.mktemp("enc") / "encoder.onnx"
    torch.onnx.export(net, (torch.zeros(1, 64, dtype=torch.int64),), str(path), input_names=["input_ids"],
                      output_names=["logits"], dynamic_axes={"input_ids": {1: "seq"}}, dynamo=False)
    ids = torch.as_tensor(np.random.default_rng(7).integers(0, VOCAB, (1, 4096)))
    with torch.no_grad():
        pooled = torch.cumsum(net.proj(net.embed(ids)), dim=1).abs().amax(-1)[0].numpy()
    return path, int(np.argmax(pooled > FP16_MAX)) + 1


def test_the_search_finds_the_first_failing_length_and_the_sum_that_breaks(encoder, tmp_path):
    path, true = encoder
    assert 1400 < true < 1800
    out = tmp_path / "s"
    proc = cpdebug("sweep", "--onnx", path, "--min-shapes", "input_ids:1x64", "--max-shapes", "input_ids:1x4096",
                   "-b", "ort,ort-cpu-fp16", "--out", out, "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    doc = json.loads((out / "sweep.json").read_text())
    search = doc["shape_search"]
    assert search["axes"] == [{"name": "seq", "inputs": [{"input": "input_ids", "axis": 1}], "min": 64, "max": 4096}]
    assert "uniform in [0, 50)" in search["inputs"]["input_ids"]  # token ids below the embedding's rows
    cand = search["candidates"]["ort-cpu-fp16"]
    first, last = cand["first_failing"]["input_ids"], cand["last_passing"]["input_ids"]
    assert cand["status"] == "found" and first[0] == 1 and last == [1, first[1] - 1]
    assert true / 2 <= first[1] <= true * 2, (first, true)
    assert "ReduceSum" in cand["first_divergent"] and "overflow" in cand["hint"]
    assert (out / cand["bisect"]).is_file()
    # every step judged, at most a run per halving of the range past the corners
    assert cand["runs"] == search["runs"] <= 2 + 13
    steps = {s["shape"]: s for s in cand["steps"]}
    assert steps["input_ids=1x64"]["outcome"] == "within_precision" and steps["input_ids=1x4096"]["fails"]
    assert all(s["fails"] == (int(s["shape"].split("x")[-1]) >= first[1]) for s in cand["steps"])
    # the judged shapes are the sweep's samples, each with its shape, grouped by shape
    by_token = {f["token"]: f for f in doc["frames"]}
    assert by_token[cand["first_failing_token"]]["shape"] == {"input_ids": first}
    assert by_token[cand["first_failing_token"]]["root_cause"] == cand["root_cause"]
    assert len(doc["by_shape"]) == search["runs"] and doc["by_shape"][0]["worst"] == "diverged"
    assert "first fails at input_ids=1x" in proc.stdout and "shape range: seq 64..4096" in proc.stdout


@pytest.mark.parametrize("given, said", [
    (("input_ids:1x64", "input_ids:1:4096"), "the shape '1:4096' is not positive integers"),
    (("input_ids:1x64", "input_ids:1x-5"), "the shape '1x-5' is not positive integers"),
    (("input_ids:1x64,", "input_ids:1x4096"), "no ':' between"),
    (("input_ids=1x64", "input_ids:1x4096"), "no ':' between"),
    (("input_ids:1x64", "ids:1x4096"), "name other inputs"),
    (("input_ids:1x64", "input_ids:1x4096x2"), "one rank in each"),
    (("input_ids:1x512", "input_ids:1x64"), "is not at most"),
    (("input_ids:2x64", "input_ids:2x4096"), "axis 0 is 1 in encoder.onnx (static)"),
    (("mask:1x64", "mask:1x4096"), "which encoder.onnx does not take"),
])
def test_a_bad_range_is_one_line_and_exit_2(encoder, tmp_path, given, said):
    path, _ = encoder
    proc = cpdebug("sweep", "--onnx", path, "--min-shapes", given[0], "--max-shapes", given[1], "--out",
                   tmp_path / "s", "--quiet")
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and said in lines[0], proc.stderr
    assert not (tmp_path / "s" / "sweep.json").exists()


def test_a_range_goes_with_a_model_alone(encoder, tmp_path):
    path, _ = encoder
    for extra, said in ((("--onnx", path, "--min-shapes", "input_ids:1x64"), "give both"),
                        (("--onnx", path, "--min-shapes", "a:1", "--max-shapes", "a:2", "--inputs", tmp_path),
                         "not with --inputs"),
                        (("--min-shapes", "a:1", "--max-shapes", "a:2"), "go with --onnx FILE.onnx"),
                        (("--torch", "x.py:f", "--min-shapes", "a:1", "--max-shapes", "a:2", "--data", "d.py:f"),
                         "not with --inputs")):
        proc = cpdebug("sweep", *extra, "--out", tmp_path / "s", "--quiet")
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr


def test_trtexec_spelling_reads_and_writes_back():
    from cp_debug.backends.trt.trt_profile import trtexec_shape_flags
    from cp_debug.samples.shapes import parse_profile, parse_shapes

    assert parse_shapes("'input:0':1x3x224x224,mask:1x224") == {"input:0": (1, 3, 224, 224), "mask": (1, 224)}
    prof = parse_profile("ids:1x64,mask:1x64", "ids:8x4096,mask:8x4096", "ids:1x512,mask:1x512")
    assert trtexec_shape_flags(prof) == ["--minShapes=ids:1x64,mask:1x64", "--optShapes=ids:1x512,mask:1x512",
                                         "--maxShapes=ids:8x4096,mask:8x4096"]
    assert parse_profile("ids:1x64", "ids:1x128")["ids"].opt == (1, 128)  # no opt: the max, as a deployment runs


def test_axes_of_one_symbol_move_together_and_inputs_nest(encoder):
    import onnx

    from cp_debug.samples.sets import GraphInputs
    from cp_debug.samples.shapes import ShapedInputs, index_bounds, parse_profile, shape_space

    graph = GraphInputs(("ids", "mask", "image"), {"ids": (None, None), "mask": (None, None), "image": (3, 8)},
                        {"ids": np.dtype("int64"), "mask": np.dtype("int64"), "image": np.dtype("float32")}, "m.onnx")
    symbols = {"ids": ("batch", "seq"), "mask": ("batch", "seq")}
    space = shape_space(parse_profile("ids:1x16,mask:1x16", "ids:1x64,mask:1x64"), graph, symbols)
    assert [(a.name, a.members, a.lo, a.hi) for a in space.axes] == [("seq", (("ids", 1), ("mask", 1)), 16, 64)]
    assert space.shapes((40,)) == {"ids": (1, 40), "mask": (1, 40), "image": (3, 8)}
    with pytest.raises(Exception, match="move together"):
        shape_space(parse_profile("ids:1x16,mask:1x16", "ids:1x64,mask:1x32"), graph, symbols)
    made = ShapedInputs(space, graph.dtypes, {"ids": 50}, seed=3)
    small, large = made.feed((20,)), made.feed((64,))
    assert np.array_equal(small["ids"], large["ids"][:, :20]) and large["ids"].max() < 50
    assert small["mask"].max() <= 1 and small["image"].dtype == np.float32
    assert index_bounds(onnx.load(str(encoder[0]))) == {"input_ids": VOCAB}


def test_the_search_on_oracles():
    from cp_debug.bisect.cures.search import run_search
    from cp_debug.sweep.shape_range.search import ShapeRangeSearch

    def searched(lo, hi, bad):
        s = ShapeRangeSearch(lo, hi, [f"a{k}" for k in range(len(lo))])
        trace = run_search(s, bad)
        return s.status, s.result, trace.runs

    for true in (65, 1598, 4096):
        status, res, runs = searched((64,), (4096,), lambda p, t=true: p[0] >= t)
        assert status == "found" and res.first_failing == (true,) and res.last_passing == (true - 1,) and runs <= 16
    assert searched((64,), (4096,), lambda p: True)[:2][0] == "fails_at_min"
    assert searched((64,), (4096,), lambda p: False)[1].last_passing == (4096,)
    # the batch alone never fails, the sequence alone does: its boundary, the batch at its min
    status, res, _ = searched((1, 64), (8, 4096), lambda p: p[1] >= 3000)
    assert res.first_failing == (1, 3000) and [b.along for b in res.boundaries] == ["a1"]
    # neither alone: both together, along the diagonal
    status, res, _ = searched((1, 64), (8, 4096), lambda p: p[0] >= 3 and p[1] >= 100)
    assert status == "found" and res.boundaries[0].along == "joint"
    assert res.first_failing[0] >= 3 and res.first_failing[1] >= 100
    assert not (res.last_passing[0] >= 3 and res.last_passing[1] >= 100)


def test_a_sample_sweep_groups_its_samples_by_shape(encoder, tmp_path):
    """The user's own samples of several lengths (`--inputs`): each frame says its shape, and `by_shape` groups them:
    the long ones diverge, the short ones stay within precision."""
    path, _ = encoder
    folder = tmp_path / "samples"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k, n in enumerate((64, 2048, 64, 2048, 64)):
        np.savez(folder / f"s{k}.npz", input_ids=rng.integers(0, VOCAB, (1, n)))
    proc = cpdebug("sweep", "--onnx", path, "--inputs", folder, "-b", "ort,ort-cpu-fp16", "--out", tmp_path / "s",
                   "--bisect-top", "0", "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    doc = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert {f["token"]: f["shape"]["input_ids"][1] for f in doc["frames"]} == {
        "s0": 64, "s1": 2048, "s2": 64, "s3": 2048, "s4": 64}
    assert [(g["label"], sorted(g["samples"]), g["outcomes"], g["worst"]) for g in doc["by_shape"]] == [
        ("input_ids=1x2048", ["s1", "s3"], {"diverged": 2}, "diverged"),
        ("input_ids=1x64", ["s0", "s2", "s4"], {"within_precision": 3}, "within_precision")]
    assert "by shape" in proc.stdout

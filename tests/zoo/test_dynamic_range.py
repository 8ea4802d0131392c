"""A declared shape range through `--torch` (issue 110, items 2 to 4), end to end with ONNX Runtime on the token
encoder whose FP16 pooled sum passes 65504 only past ~1,600 tokens (tests/zoo/token_encoder.py), given only as
`--min-shapes x:1x64x16 --max-shapes x:1x4096x16`: the sequence axis exported dynamic because the range moves it;
the sweep's search finds the first failing length within 2x of the true one (an FP32 cumulative sum of the encoder's
own per-token features on the search's inputs says where that is) and names `pool`; fix verifies its set at the
range's min, mid and max and `fix --check` verifies them again; the kit's ONNX has the dynamic dim and its trtexec
script the range. A range the declared axes hold static, or on an input the model lacks, is one line (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.cli_run import cpdebug
from tests.zoo import token_encoder

ZOO = Path(token_encoder.__file__).parent
PLAIN = f"{ZOO / 'token_encoder.py'}:build"  # no dynamic(): the axes are the range's
DECLARED = f"{ZOO / 'token_encoder_dynamic.py'}:build"  # dynamic() declares x:1 as Dim("seq")
RANGE = ("--min-shapes", "x:1x64x16", "--max-shapes", "x:1x4096x16")
FP16 = ("--backends", "torch,ort-cpu-fp16")
FP16_MAX = 65504.0


def true_first_failing(seed: int = 0) -> int:
    """The first length at which the FP32 pooled sum of the encoder's per-token features, on the inputs the search
    draws (standard normal from --seed at the max shape, each shorter length its leading tokens), leaves FP16."""
    import torch

    net, _ = token_encoder.build()
    x = torch.as_tensor(np.random.default_rng(seed).standard_normal((1, 4096, token_encoder.FEATURES))
                        .astype(np.float32))
    with torch.no_grad():
        pooled = torch.cumsum(net.mlp(net.embed(x)), dim=1).abs().amax(-1)[0].numpy()
    return int(np.argmax(pooled > FP16_MAX)) + 1


def test_the_range_search_through_torch_finds_the_first_failing_length_and_pool(tmp_path):
    true = true_first_failing()
    assert 1400 < true < 1800
    out = tmp_path / "sweep"
    proc = cpdebug("sweep", "--torch", PLAIN, *RANGE, *FP16, "--out", out, "--quiet")
    assert proc.returncode == 1, proc.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["model"]["dynamic"] == {"axes": ["x:1"], "source": "range"}
    search = doc["shape_search"]
    assert [(a["inputs"], a["min"], a["max"]) for a in search["axes"]] == [([{"input": "x", "axis": 1}], 64, 4096)]
    cand = search["candidates"]["ort-cpu-fp16"]
    first, last = cand["first_failing"]["x"], cand["last_passing"]["x"]
    assert cand["status"] == "found" and last == [1, first[1] - 1, 16]
    assert true / 2 <= first[1] <= true * 2, (first, true)
    assert cand["first_divergent"] == "pool" and cand["root_cause"] == "pool"
    assert (out / cand["bisect"]).is_file() and cand["runs"] <= 2 + 13
    assert all(s["fails"] == (int(s["shape"].split("x")[2]) >= first[1]) for s in cand["steps"])


def test_a_declared_axis_names_the_range_and_one_it_holds_static_is_one_line(tmp_path):
    out = tmp_path / "sweep"
    proc = cpdebug("sweep", "--torch", DECLARED, *RANGE, *FP16, "--bisect-top", "0", "--out", out, "--quiet")
    assert proc.returncode == 1, proc.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["model"]["dynamic"] == {"axes": ["x:1=seq"], "source": "dynamic()"}
    assert [a["name"] for a in doc["shape_search"]["axes"]] == ["seq"]
    for args, said in ((("--dynamic", "x:0"), "--min-shapes / --max-shapes move x:1, which --dynamic holds static "
                                              "(it declares x:0)"),
                       (("--min-shapes", "y:1x64", "--max-shapes", "y:1x4096"), "names input 'y'")):
        given = args if args[0] != "--dynamic" else (*args, *RANGE)
        proc = cpdebug("sweep", "--torch", PLAIN, *given, *FP16, "--out", tmp_path / "bad", "--quiet")
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and said in lines[0], proc.stderr[-2000:]
        assert not (tmp_path / "bad" / "sweep.json").exists()


def test_fix_over_the_range_holds_at_min_mid_and_max_and_its_check_too(tmp_path):
    out = tmp_path / "fix"
    proc = cpdebug("fix", "--torch", PLAIN, *RANGE, *FP16, "--out", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "fix.json").read_text())
    assert doc["model"]["dynamic"] == {"axes": ["x:1"], "source": "range"}
    assert "pool" in doc["set"]["modules"]
    at = {"min": "x[1,64,16]", "mid": "x[1,512,16]", "max": "x[1,4096,16]"}
    assert doc["shape_range"]["verified_at"] == at
    assert doc["search_frames"]["search"] == ["min_1", "mid_1", "max_1"]
    assert doc["search_frames"]["verify"] == ["min_2", "mid_2", "max_2"] and doc["search_frames"]["held_out"]
    v = doc["verification"]
    assert [(s["shape"], s["holds"]) for s in v["shapes"]] == [(s, True) for s in at.values()]
    assert {x["sample"]: x["before"]["passed"] for x in v["samples"]} == {"min_2": True, "mid_2": True,
                                                                          "max_2": False}
    assert onnx.load(out / "model_fp16.onnx").graph.input[0].type.tensor_type.shape.dim[1].dim_param
    assert "verified at min x[1,64,16], mid x[1,512,16], max x[1,4096,16]" in proc.stdout
    check = cpdebug("fix", "--check", out, "--json", "-")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    checked = json.loads(check.stdout)
    assert checked["holds"] and [s["shape"] for s in checked["verification"]["shapes"] if s["holds"]] == list(
        at.values())
    assert checked["shape_range"]["verified_at"] == at
    (out / "verify_max_2.npz").unlink()  # the range's max no longer re-verified: one line, not a quieter check
    doc["verification"]["samples"] = [x for x in v["samples"] if x["sample"] != "max_2"]
    (out / "fix.json").write_text(json.dumps(doc))
    check = cpdebug("fix", "--check", out)
    assert check.returncode == 2 and "holds no sample at the range's max x[1,4096,16]" in check.stderr


def test_fix_of_an_onnx_file_over_the_range(tmp_path):
    """The written FP32 graph of a fix over the range (dynamic on the sequence) fixed again as `--onnx`."""
    first = tmp_path / "first"
    proc = cpdebug("fix", "--torch", PLAIN, *RANGE, *FP16, "--out", first, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "fix"
    proc = cpdebug("fix", "--onnx", first / "model_fp32.onnx", *RANGE, "--backends", "ort,ort-cpu-fp16", "--out",
                   out, "--json", "-")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "fix.json").read_text())
    assert doc["set"]["keep_fp32"] and doc["verification"]["holds"]
    assert [s["shape"] for s in doc["verification"]["shapes"]] == ["x[1,64,16]", "x[1,512,16]", "x[1,4096,16]"]
    assert cpdebug("fix", "--check", out).returncode == 0


def test_the_kit_exports_the_ranges_axis_dynamic_and_carries_trtexecs_shapes(tmp_path):
    from cp_debug.backends.kit import kit_files as kf

    kit = tmp_path / "kit"
    proc = cpdebug("trt-kit", "--torch", PLAIN, *RANGE, "--opt-shapes", "x:1x512x16", "--out", kit, "--quiet")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dims = onnx.load(kit / "token_encoder.onnx").graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 0, 16] and dims[1].dim_param
    m = kf.open_kit(kit).manifest
    r = m.profile["token_encoder"]["x"]
    assert (r["min"], r["opt"], r["max"]) == ([1, 64, 16], [1, 512, 16], [1, 4096, 16])
    trtexec = (kit / kf.TRTEXEC_SCRIPT).read_text()
    for flag in ("--minShapes=x:1x64x16", "--optShapes=x:1x512x16", "--maxShapes=x:1x4096x16"):
        assert flag in trtexec, flag
    poly = (kit / kf.POLYGRAPHY_SCRIPT).read_text()
    assert "--trt-min-shapes 'x:[1,64,16]'" in poly and "--trt-max-shapes 'x:[1,4096,16]'" in poly


@pytest.mark.parametrize("args, said", [
    (("--min-shapes", "x:1x64x16"), "give both --min-shapes / --max-shapes"),
    (("--min-shapes", "x:1x64x16", "--max-shapes", "x:1x4096"), "one rank in each"),
    (("--min-shapes", "x=1x64x16", "--max-shapes", "x:1x4096x16"), "no ':' between"),
])
def test_a_bad_range_of_fix_is_one_line(tmp_path, args, said):
    proc = cpdebug("fix", "--torch", PLAIN, *args, *FP16, "--out", tmp_path / "fix")
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and said in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "fix").exists()

"""One judge for every cure (issue 115, "every cure offered holds at the output"): bisect's verdict, keep-fp32, the
intervention, fix's search, its verification and `fix --check` judge a cure alike (`compare/cure_judge.passes`).

The model holds the mechanism silero-vad's INT8 showed: an output within its precision's budget (0.41× FP16's) with
elements past atol + rtol·|ref| (x + 1000 − 1000 in float16, eight elements of 1024 rounded to 0.5 steps), beside
an output an overflow breaks (x · 3e4 / 3e4: Inf past 65504). bisect calls the first one within precision and
keep-fp32 verifies the set {scale_up, scale_down}; before this judge, fix held the first one to the element-wise
tolerance too and said "No set passes", exit 1, on the set bisect --keep-fp32 calls within precision."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

N = 1024
FP16 = "ort-cpu,ort-cpu-fp16"


def _model(path: Path, overflow: bool = True) -> Path:
    """y = x · 3e4 / 3e4 (`overflow`: Inf past 2.18 in float16) and z = x + offset − offset (within FP16's budget,
    eight elements past its tolerance)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    offset = np.zeros((1, N), np.float32)
    offset[0, ::128] = 1000.0  # float16's step is 0.5 there: x + 1000 − 1000 loses up to 0.25 of x
    nodes = [helper.make_node("Mul", ["x", "big"], ["scaled"], name="scale_up"),
             helper.make_node("Div", ["scaled", "big"], ["y"], name="scale_down"),
             helper.make_node("Add", ["x", "offset"], ["shifted"], name="shift"),
             helper.make_node("Sub", ["shifted", "offset"], ["z"], name="unshift")][0 if overflow else 2:]
    outputs = ("y", "z") if overflow else ("z",)
    graph = helper.make_graph(nodes, "one_judge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, N])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, N]) for n in outputs],
                              [numpy_helper.from_array(np.array(3e4, np.float32), "big"),
                               numpy_helper.from_array(offset, "offset")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _input(path: Path) -> Path:
    x = np.random.default_rng(0).standard_normal((1, N)).astype(np.float32)
    x[0, :4] = [3.0, -3.0, 2.5, -2.5]  # past 65504 / 3e4 = 2.18: Inf in float16
    np.savez(path, x=x)
    return path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_an_element_wise_miss_within_budget_passes_alike_for_every_cure():
    """The rule itself, on a real float16 run's output: held (within its budget with nothing restored) it passes by
    its budget; not held it is judged by its tolerance too, and fails."""
    import onnx

    from cp_debug.backends import make_runner
    from cp_debug.backends.spec import BackendSpec
    from cp_debug.compare import cure_judge
    from cp_debug.compare.diff import TensorDiff, default_tolerance
    from cp_debug.compare.noise import judge

    with tempfile.TemporaryDirectory() as tmp:
        model = onnx.load(_model(Path(tmp) / "m.onnx"))
        feed = dict(np.load(_input(Path(tmp) / "x.npz")))
    outs = {}
    for spec in ("ort-cpu-fp32", "ort-cpu-fp16"):
        with make_runner(BackendSpec.parse(spec), onnx_model=model) as r:
            outs[spec] = r.infer(feed)
    diffs = [TensorDiff.from_arrays(n, outs["ort-cpu-fp32"][n], outs["ort-cpu-fp16"][n], default_tolerance("fp16"))
             for n in ("y", "z")]
    judged = [(d, judge(d, "fp16")) for d in diffs]
    (y, jy), (z, jz) = judged
    assert z.status == "diverged" and 0.1 < jz.noise_ratio < 1  # past the tolerance, within the budget
    assert z.max_abs > 0.1 and y.inf > 0
    assert cure_judge.held_of(judged) == {"z"}
    assert cure_judge.passes(z, "fp16", jz, held=True) and not cure_judge.passes(z, "fp16", jz)
    assert not cure_judge.passes(y, "fp16", jy, held=True)  # held or not, an Inf output never passes


@pytest.mark.long  # five cpdebug runs end to end (≥ 5 s on 2 idle cores)
def test_bisect_keep_fp32_fix_and_check_verify_one_cure(tmp_path):
    model, sample = _model(tmp_path / "m.onnx"), _input(tmp_path / "x.npz")
    proc = cpdebug("bisect", "--onnx", model, "--inputs", sample, "-b", FP16, "--json", tmp_path / "b.json")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    status = {r["probe"]: r["status"] for r in _json(tmp_path / "b.json")["results"]["ort-cpu-fp16"]}
    assert status["z"] == "ok" and status["y"] == "inf"  # z within its budget: bisect's verdict
    proc = cpdebug("keep-fp32", "--onnx", model, "--inputs", sample, "--json", tmp_path / "k.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = _json(tmp_path / "k.json")
    assert found["status"] == "found" and sorted(found["keep"]) == ["scale_down", "scale_up"], found["steps"]
    keep = ",".join(found["keep"])
    proc = cpdebug("bisect", "--onnx", model, "--inputs", sample, "-b", FP16, "--keep-fp32", keep, "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:]
    # fix, on its own samples (standard normal: every one has |x| past 2.18), searching what keep-fp32 verified
    proc = cpdebug("fix", "--onnx", model, "--search-nodes", keep, "--out", tmp_path / "fix", "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]  # before: "No set passes", exit 1
    doc = _json(tmp_path / "fix" / "fix.json")
    assert sorted(doc["set"]["keep_fp32"]) == ["scale_down", "scale_up"] and doc["verification"]["holds"]
    samples = doc["verification"]["samples"]
    assert all(s["before"]["within_budget"] == ["z"] for s in samples), samples  # the fix's held outputs
    assert any(s["after"]["worst_output"] == "z" for s in samples)
    proc = cpdebug("fix", "--check", tmp_path / "fix", "--quiet")
    assert proc.returncode == 0 and "holds here" in proc.stdout, proc.stdout[-2000:]
    # the record's held outputs are the check's: without them z is held to the tolerance, and the check fails
    for s in samples:
        del s["before"]["within_budget"]
    (tmp_path / "fix" / "fix.json").write_text(json.dumps(doc))
    proc = cpdebug("fix", "--check", tmp_path / "fix", "--quiet")
    assert proc.returncode == 5, proc.stdout[-2000:]


@pytest.mark.long  # three cpdebug runs end to end (≥ 5 s on 2 idle cores)
def test_a_candidate_bisect_calls_within_precision_needs_no_fix(tmp_path):
    """z alone: bisect says within precision (exit 0) and keep-fp32 "not needed"; fix held z to its tolerance and
    found no set (exit 1, "No set passes") where nothing needs fixing. Now: nothing kept, and the file holds."""
    model, sample = _model(tmp_path / "m.onnx", overflow=False), _input(tmp_path / "x.npz")
    proc = cpdebug("bisect", "--onnx", model, "--inputs", sample, "-b", FP16, "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:]
    proc = cpdebug("keep-fp32", "--onnx", model, "--inputs", sample, "--json", tmp_path / "k.json")
    assert proc.returncode == 0 and _json(tmp_path / "k.json")["status"] == "not_needed", proc.stdout[-2000:]
    proc = cpdebug("fix", "--onnx", model, "--out", tmp_path / "fix", "--quiet")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = _json(tmp_path / "fix" / "fix.json")
    assert doc["set"]["keep_fp32"] == [] and doc["verification"]["holds"], doc["set"]
    assert all(not s["before"]["bad_outputs"] for s in doc["verification"]["samples"])  # as bisect's verdict

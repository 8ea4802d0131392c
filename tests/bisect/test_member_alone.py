"""A set's member that alone brings the outputs back (issue 115, item 1): the set search's drops may end at one
candidate ranked past the first `TRIED` run alone; that one is the root cause, confirmed alone — not the first set
that came back with it (tests/bisect/int8_member_alone.py: three side convs whose huge own INT8 error a thousandth
hides, ranked first, and the main conv ranked fourth whose smaller error reaches the output whole).

The right answer without cp_debug, with ONNX Runtime's own quantizer: `/d/Conv` in `nodes_to_exclude` alone brings the
output back, any side conv alone (or all three) leaves it as it is. Before, the set search ran `[a, c, b, d]` (back),
`[b, d]` (back), `[d]` (back) and the verdict named the first: "the set /a/Conv_output_0, /c/Conv_output_0,
/b/Conv_output_0, /d/Conv_output_0 left out of INT8", after running every side conv alone in INT8 and the graph's
halves besides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export, five quantizations and a bisect (~15 s on 2 busy cores)


def _error(model, x: np.ndarray, ref: np.ndarray) -> float:
    import onnxruntime as ort

    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return float(np.sqrt(np.mean((got - ref) ** 2)) / np.sqrt(np.mean(ref ** 2)))


def named_alone(cause: dict, node: str) -> dict:
    """`cause` (a root cause's JSON) names `node`'s output alone, confirmed, its cure `node` left out of INT8; its
    intervention."""
    found, probe = cause["intervention"], f"{node}_output_0"
    assert cause["probe"] == probe and cause["confirmed"], cause
    assert found["probe"] == probe and found["set"] == [] and found["keep"] == [node], found
    assert f"confirmed by intervention: {probe} left out of INT8 brings the outputs back" in cause["hint"]
    assert "restored together" not in cause["hint"], cause["hint"]
    return found


def test_the_member_that_alone_brings_the_outputs_back_is_the_root_not_the_set(tmp_path: Path):
    import onnx
    import onnxruntime as ort

    from cp_debug.bisect.cures.set_search import SET_RUNS
    from cp_debug.bisect.findings.intervention import TRIED
    from cp_debug.precision.int8 import quantize_int8
    from tests.bisect.exported import written
    from tests.bisect.int8_member_alone import build

    x, frames = written(build, tmp_path / "model.onnx", "y")
    model = onnx.load(tmp_path / "model.onnx")
    calib = [{"x": f} for f in frames]
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    # the right answer, without cp_debug: ONNX Runtime's quantizer with the convs in nodes_to_exclude
    err = {ex: _error(quantize_int8(model, calib, exclude_nodes=ex).model, x, ref)
           for ex in ((), ("/a/Conv", "/b/Conv", "/c/Conv"), ("/a/Conv",), ("/d/Conv",))}
    assert err[("/d/Conv",)] < 0.1 * err[()], err
    assert min(err[("/a/Conv", "/b/Conv", "/c/Conv")], err[("/a/Conv",)]) > 0.9 * err[()], err

    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "calib.npz", x=np.concatenate(frames))
    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                   tmp_path / "calib.npz", "-b", "ort-cpu,ort-cpu-int8", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    cause = json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-int8"]
    tried = named_alone(cause, "/d/Conv")["tried"]
    # the ranking proposed the side convs first: each run alone, not back; the set search reached d
    singles = [t for t in tried if not isinstance(t["candidate"], list)]
    assert {t["candidate"] for t in singles[:TRIED]} == {"/a/Conv_output_0", "/b/Conv_output_0", "/c/Conv_output_0"}
    assert not any(t["back"] for t in singles[:TRIED]), singles
    assert any(isinstance(t["candidate"], list) and "/d/Conv_output_0" in t["candidate"] and t["back"] for t in tried)
    mine = [t for t in singles if t["candidate"] == "/d/Conv_output_0"]
    assert len(mine) == 1 and mine[0]["back"] and mine[0]["output_error_after"]["within"], mine
    # a cure found: no layer run alone in INT8, no halves of the graph — the runs bounded by the search's own
    assert not any(t["alone"] for t in tried) and len(tried) <= 2 * TRIED + SET_RUNS, tried
    assert "the graph's first half" not in cause["hint"], cause["hint"]

"""A set search that ends at a set of 2 or 3 runs each member not yet run alone (issue 115, item 1): where one alone
brings the outputs back, it is the smallest cure and named alone; where none does, the set is truly needed and said
with the runs that show it (tests/bisect/int8_set_member.py: `c` ranked first, hidden at the output; twins `x`, `y`
whose INT8 rounding cancels only while both are quantized; the main branch `d` ranked fourth).

The right answers without cp_debug, with ONNX Runtime's own quantizer (`nodes_to_exclude`): twins — `/d/Conv` alone
brings the output back, and so do {x, y, d}; {x, d} and {y, d} do not. Apart (`y` its own weights) — only {x, y, d}
does. Before, the twins' search (a prefix [c, x, y, d], then drops) ended at {x, y, d} without running `d` alone:
"confirmed by intervention: restored together: /x/Conv_output_0, /y/Conv_output_0, /d/Conv_output_0 — no one of them
alone does … 8 run(s)); verified at the outputs: --exclude-int8 /x/Conv,/y/Conv,/d/Conv"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

pytestmark = pytest.mark.long  # an export, five quantizations and a bisect each (~15 s on 2 busy cores)


def _errors(build, tmp_path: Path, sets) -> dict:
    """The output's rel. RMSE of ONNX Runtime's quantization with each of `sets` in `nodes_to_exclude`; the files
    the bisect reads written to `tmp_path`."""
    import onnx
    import onnxruntime as ort

    from cp_debug.precision.int8 import quantize_int8
    from tests.bisect.exported import written

    x, frames = written(build, tmp_path / "model.onnx", "y")
    model = onnx.load(tmp_path / "model.onnx")
    calib = [{"x": f} for f in frames]

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    ref = run(model)
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "calib.npz", x=np.concatenate(frames))
    return {ex: float(np.sqrt(np.mean((run(quantize_int8(model, calib, exclude_nodes=ex).model) - ref) ** 2))
                      / np.sqrt(np.mean(ref ** 2))) for ex in sets}


def _bisect(tmp_path: Path) -> dict:
    proc = cpdebug("bisect", "--onnx", tmp_path / "model.onnx", "--inputs", tmp_path / "x.npz", "--calib",
                   tmp_path / "calib.npz", "-b", "ort-cpu,ort-cpu-int8", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads((tmp_path / "r.json").read_text())["root_cause"]["ort-cpu-int8"]


XYD, XD, YD, D = ("/x/Conv", "/y/Conv", "/d/Conv"), ("/x/Conv", "/d/Conv"), ("/y/Conv", "/d/Conv"), ("/d/Conv",)


def test_a_member_of_the_set_that_alone_brings_the_outputs_back_is_named_alone(tmp_path: Path):
    from cp_debug.bisect.cures.set_search import SET_RUNS
    from cp_debug.bisect.findings.intervention import TRIED
    from tests.bisect.int8_set_member import build

    err = _errors(build, tmp_path, ((), XYD, XD, YD, D))
    assert max(err[D], err[XYD]) < 0.2 * err[()] and min(err[XD], err[YD]) > err[()], err  # d alone cures
    from tests.bisect.test_member_alone import named_alone

    cause = _bisect(tmp_path)
    tried = named_alone(cause, "/d/Conv")["tried"]
    sets = [t for t in tried if isinstance(t["candidate"], list)]
    # the search ended at {x, y, d}, its pairs with d not back; d then run alone, once, and said in the count
    assert any(sorted(t["candidate"]) == sorted(f"{n}_output_0" for n in XYD) and t["back"] for t in sets), sets
    assert not any(sorted(t["candidate"]) == sorted(f"{n}_output_0" for n in XD) and t["back"] for t in sets), sets
    mine = [t for t in tried if t["candidate"] == "/d/Conv_output_0"]
    assert len(mine) == 1 and mine[0]["member_alone"] and mine[0]["back"], mine
    assert f"sets of the first 6 ranked: {len(sets)} run(s)" in cause["hint"], cause["hint"]
    assert "then each member not yet run alone run alone: 1 run(s)" in cause["hint"], cause["hint"]
    assert len(tried) <= 2 * TRIED + SET_RUNS + 3, tried


def test_a_set_whose_members_each_fail_alone_is_named_with_the_runs_that_show_it(tmp_path: Path):
    from tests.bisect.int8_set_member import build_apart

    err = _errors(build_apart, tmp_path, ((), XYD, D))
    assert err[XYD] < 0.2 * err[()] and err[D] > 0.5 * err[()], err  # the three are needed together
    cause = _bisect(tmp_path)
    found = cause["intervention"]
    assert sorted(found["set"]) == sorted(f"{n}_output_0" for n in XYD) and sorted(found["keep"]) == sorted(XYD)
    assert "restored together: " in cause["hint"] and "no one of them alone does" in cause["hint"], cause["hint"]
    singles = {t["candidate"]: t for t in found["tried"] if not isinstance(t["candidate"], list)}
    assert all(not singles[f"{n}_output_0"]["back"] for n in XYD), singles  # each member run alone, none back
    assert singles["/d/Conv_output_0"]["member_alone"] and not found["set_runs_spent"], found
    assert "then each member not yet run alone run alone: 1 run(s)" in cause["hint"], cause["hint"]

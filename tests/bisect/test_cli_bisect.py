"""`cpdebug bisect` end to end: exit codes, one-line errors, table, JSON, bundles. The command runs in process
(`tests/cli_run.py`); two bad inputs go through the entry point in a fresh process, and every bundle's repro.py runs
in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cli_run import cpdebug

PLANTED = Path(__file__).with_name("planted.py")


def cpdebug_process(*args):
    """`python -m cp_debug.cli.main ARGS`: the entry point in its own process."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cp_debug.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env)


def one_error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_demo_prints_table_and_strict_json(tmp_path):
    proc = cpdebug("bisect", "--backends", "torch,ort", "--json", tmp_path / "run.json", "--csv", tmp_path / "run.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pts_backbone.blocks.0" in proc.stdout and "within precision" in proc.stdout
    report = json.loads((tmp_path / "run.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert report["outcome"] == "within_precision" and report["settings"]["tolerance_mode"] == "model"
    assert report["schema"] == "cp_debug.report/1"
    # no model given: the demo named in the first line and in the JSON (issue 85)
    assert proc.stderr.startswith("cpdebug: no model given: bisect runs the built-in demo, CenterPoint preset demo")
    assert report["runs_on"]["given"] is False and "CenterPoint preset demo" in report["runs_on"]["text"]
    assert report["reference"] == "torch" and report["candidates"] == ["ort"]
    names = [p["name"] for p in report["probes"]]
    assert "pts_neck.deblocks.2" in names and "spatial_features" in names
    assert report["first_divergent"] == {"ort": None}
    # the model as the user named it, which `extract` loads again
    assert report["model_record"] == {"preset": "demo", "config": None, "checkpoint": None, "random_weights": False,
                                      "seed": 0, "int8": None}
    # every local error was computed (a segment cut at a dynamic-shaped tensor once was not: no output shape)
    assert not [w for w in report["warnings"] if "not computed" in w], report["warnings"]
    assert (tmp_path / "run.csv").read_text().count("\n") >= len(names)
    # the end of a CenterPoint bisect: the boxes of both sides on this scan, matched box to box
    det = report["detections"]["ort"]
    assert det["reference_boxes"] > 0 and det["matched"] == det["reference_boxes"] and not det["changed"]
    assert "detections: no box changed on this scan" in proc.stdout


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_bundle_of_a_planted_fault_reproduces_in_a_fresh_process(tmp_path):
    out = tmp_path / "bundle"
    proc = cpdebug("bisect", "--torch", f"{PLANTED}:fp16_overflow", "--backends", "torch,ort-cpu-fp16",
                   "--bundle", out, "--html", tmp_path / "r.html", "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    import onnx

    sub = onnx.load(out / "subgraph.onnx")
    onnx.checker.check_model(sub)
    assert len(sub.graph.node) < 10  # the model has ~14 nodes: the bundle holds the failing segment only
    rep = subprocess.run([sys.executable, "repro.py"], cwd=out, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 1, rep.stdout + rep.stderr
    assert "REPRODUCED" in rep.stdout
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") >= 2


def test_bundle_on_a_healthy_run_keeps_its_verdict_and_writes_nothing(tmp_path):
    """A CI job that always asks for a bundle: a healthy run stays exit 0, its JSON written, one line, no folder."""
    out, run = tmp_path / "bundle", tmp_path / "run.json"
    proc = cpdebug("bisect", "--torch", f"{PLANTED}:healthy", "--backends", "torch,ort", "--bundle", out,
                   "--json", run, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("nothing diverged: no bundle written") == 1, proc.stderr
    assert "error" not in proc.stderr
    assert not out.exists()
    assert json.loads(run.read_text())["outcome"] == "within_precision"


@pytest.mark.parametrize("case", ["unknown_backend", "corrupt_onnx", "unknown_input", "wrong_shape", "nan_input",
                                  "missing_backend"])
def test_bad_input_gives_one_line_and_the_documented_exit_code(tmp_path, case):
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    args = ["bisect", "--torch", f"{PLANTED}:healthy", "--quiet"]
    code = 2
    if case == "unknown_backend":
        args += ["--backends", "torch,onnxrt-gpu"]
    elif case == "corrupt_onnx":
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"\x08\x07 this is not a protobuf model")
        args = ["bisect", "--onnx", bad, "--backends", "ort,ort-cpu-fp16"]
    elif case == "unknown_input":
        np.savez(tmp_path / "in.npz", image=x)
        args += ["--inputs", tmp_path / "in.npz", "--backends", "torch,ort"]
    elif case == "wrong_shape":
        np.savez(tmp_path / "in.npz", x=x[:, :4])
        args += ["--inputs", tmp_path / "in.npz", "--backends", "torch,ort"]
    elif case == "nan_input":
        x[0, 0, 0, 0] = np.nan
        np.savez(tmp_path / "in.npz", x=x)
        args += ["--inputs", tmp_path / "in.npz", "--backends", "torch,ort"]
    elif case == "missing_backend":
        args += ["--backends", "torch,ort-cuda"]
        code = 3
    # a bad file and a backend this machine lacks through the entry point itself, the others in process
    proc = (cpdebug_process if case in ("corrupt_onnx", "missing_backend") else cpdebug)(*args)
    assert proc.returncode == code, proc.stderr[-2000:]
    line = one_error_line(proc)
    expected = {"unknown_backend": "onnxrt", "corrupt_onnx": "bad.onnx", "unknown_input": "image",
                "wrong_shape": "shape", "nan_input": "NaN", "missing_backend": "onnxruntime-gpu"}[case]
    assert expected in line, line


@pytest.mark.slow
def test_extract_bundles_a_saved_run(tmp_path):
    run = tmp_path / "run.json"
    proc = cpdebug("bisect", "--torch", f"{PLANTED}:int8_hostile", "--backends", "torch,ort-cpu-int8",
                   "--json", run, "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    out = tmp_path / "bundle"
    proc = cpdebug("extract", run, "--bundle", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = subprocess.run([sys.executable, "repro.py"], cwd=out, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 1, rep.stdout + rep.stderr


def test_a_backend_this_machine_lacks_is_said_before_the_model_loads(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here: ort-cuda is not missing")
    built = tmp_path / "built"
    model = tmp_path / "model.py"
    model.write_text("import pathlib\nimport torch\n\n\ndef build():\n"
                     f"    pathlib.Path({str(built)!r}).write_text('the model was loaded')\n"
                     "    return torch.nn.Conv2d(8, 8, 3), (torch.zeros(1, 8, 16, 16),)\n")
    proc = cpdebug("bisect", "--torch", f"{model}:build", "--backends", "torch,ort-cuda", "--quiet")
    assert proc.returncode == 3 and "onnxruntime-gpu" in one_error_line(proc)
    assert not built.exists()

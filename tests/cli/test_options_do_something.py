"""Every option either works on every entry or is refused in one line (issue 117): a `--torch` / `--onnx` sweep
writes the frames.parquet and report.html (or `--html FILE`) that `--out`'s help promises, as a recipe's does; a
second value of an option that takes one is refused (it silently replaced the first); a built-in recipe's option
given with `--torch` / `--onnx` (which read none of them) is refused rather than ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

FILES = Path(__file__).resolve().parents[1] / "data" / "tool_files"
CNN, INPUTS = FILES / "cnn" / "healthy" / "onnxsim" / "model.onnx", FILES / "cnn_inputs.npz"


def test_onnx_sweep_writes_parquet_and_html(tmp_path):
    import pandas as pd

    res = cpdebug("sweep", "--onnx", CNN, "--inputs", INPUTS, "-b", "ort,ort-cpu-fp16", "--out", "o",
                  "--html", "o/mine.html", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads((tmp_path / "o" / "sweep.json").read_text())
    df = pd.read_parquet(tmp_path / "o" / "frames.parquet")
    assert list(df["candidate"]) == ["ort-cpu-fp16"] and list(df["probe"]) == ["output"]
    assert list(df["status"]) == [doc["frames"][0]["status"]] == ["within_precision"]
    assert 0 < df["rel_rmse"][0] < df["expected_rel_rmse"][0]
    page = (tmp_path / "o" / "mine.html").read_text()
    assert doc["verdict"] in page and "cnn_inputs" in page
    assert not (tmp_path / "o" / "report.html").exists()  # --html FILE in its place
    res = cpdebug("sweep", "--onnx", CNN, "--inputs", INPUTS, "-b", "ort,ort-cpu-fp16", "--out", "p", "--no-html",
                  cwd=tmp_path)
    assert res.returncode == 0 and (tmp_path / "p" / "frames.parquet").is_file()
    assert not (tmp_path / "p" / "report.html").exists()


@pytest.mark.parametrize("argv, said", [
    (["sweep", "--out", "o", "--inputs", INPUTS, "--inputs", FILES / "cnn_calib.npz"], "--inputs given 2 times"),
    (["bisect", "--inputs", INPUTS, "--inputs=" + str(INPUTS), "-b", "ort", "-b", "ort-cpu-fp16"],
     "--inputs given 2 times"),
    (["bisect", "--inputs", INPUTS, "--points", INPUTS, "--preset", "awml-base"], "--preset, --points: not with"),
    (["sweep", "--out", "o", "--inputs", INPUTS, "--n", "5", "--bootstrap", "10"], "--n, --bootstrap: not with"),
    (["eval", "--inputs", INPUTS, "--match-distance", "3"], "--match-distance: not with"),
    (["fix", "--inputs", INPUTS, "-b", "ort,ort-cpu-int8", "--out", "o", "--method", "entropy", "--calib-n", "4"],
     "--calib-n, --method: not with"),
])
def test_options_that_would_do_nothing_refused(tmp_path, argv, said):
    res = cpdebug(argv[0], "--onnx", CNN, *argv[1:], cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], res.stderr
    assert not (tmp_path / "o").exists()  # said before any work


def test_option_declared_to_repeat_still_repeats(tmp_path):
    """trt-kit's --inputs takes several samples: not refused as a repeat."""
    res = cpdebug("trt-kit", "--onnx", tmp_path / "none.onnx", "--inputs", "a.npz", "--inputs", "b.npz", "--out", "k",
                  cwd=tmp_path)
    assert "given 2 times" not in res.stderr

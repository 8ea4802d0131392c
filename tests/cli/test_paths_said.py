"""A path given where a file or a folder goes, said as it is (issue 117): a folder given as --onnx is a folder, not
"ONNX file not found", with the .onnx files it holds or that it holds none; a generic model's `SPEC@DIR` without
ONNX files is not told CenterPoint's file names as if they were its own."""

from __future__ import annotations

from pathlib import Path

from tests.cli_run import cpdebug

FILES = Path(__file__).resolve().parents[1] / "data" / "tool_files"
CNN, INPUTS = FILES / "cnn" / "healthy" / "onnxsim" / "model.onnx", FILES / "cnn_inputs.npz"


def test_a_folder_given_as_onnx_is_said_to_be_one(tmp_path):
    res = cpdebug("bisect", "--onnx", CNN.parent, "--inputs", INPUTS, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "is a folder, not an ONNX file: give one of its files (model.onnx)" in res.stderr
    (tmp_path / "empty").mkdir()
    res = cpdebug("bisect", "--onnx", "empty", "--inputs", INPUTS, cwd=tmp_path)
    assert res.returncode == 2 and "empty is a folder, not an ONNX file: it holds no .onnx file" in res.stderr


def test_an_empty_deployed_folder_of_a_generic_model(tmp_path):
    (tmp_path / "deploy").mkdir()
    res = cpdebug("bisect", "--onnx", CNN, "--inputs", INPUTS, "-b", "ort,ort-cpu-fp16@deploy", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "holds no .onnx file" in res.stderr and "the model's own file for --torch / --onnx" in res.stderr

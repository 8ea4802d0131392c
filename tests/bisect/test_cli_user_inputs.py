"""`cpdebug bisect` on the user's own model file and arrays (issue 54): their code raising is their error (exit 2,
one line naming their file and line), `--calib` takes a batch of samples or several files, and an input given in
another dtype than the model takes is cast with a word (or refused where token ids are not integers).

Each model is written into tmp_path as the user would (`my_model.py`, `build()` returning (module, examples)); the
TorchScript exporter keeps every run about a second."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from tests.cli_run import cpdebug

MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        if bool((x > 50).any()):
            raise ValueError("x beyond the range the model was trained on")
        return self.head(torch.relu(self.conv(x)))


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, ids):
        return self.out(self.emb(ids))


def build():
    torch.manual_seed(0)
    return Net().eval(), (torch.randn(1, 3, 8, 8),)


def tokens():
    torch.manual_seed(0)
    return Tokens().eval(), (torch.tensor([[1, 2, 3, 4]]),)


def trained():
    torch.manual_seed(0)
    return Net().eval()  # a trained model alone, as a wheel ships it: its sample comes from --inputs


def missing_checkpoint():
    net = Net()
    net.load_state_dict(torch.load("ckpt.pth"))
    return net, (torch.randn(1, 3, 8, 8),)


class Broken(Net):
    def forward(self, x):
        return self.head(x)  # 3 channels into a 4-channel conv


def broken_forward():
    return Broken().eval(), (torch.randn(1, 3, 8, 8),)


def cp_debug_raises():
    from cp_debug.bisect.subjects.feeds import cast_inputs

    cast_inputs({"x": None}, {}, "x.npz", "")  # cp_debug's own code raises (AttributeError), called from theirs
'''


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(textwrap.dedent(MODEL))
    return path


def line_of(path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


def bisect(model, func: str, *args, backends: str = "torch,ort"):
    return cpdebug("bisect", "--torch", f"{model}:{func}", "--backends", backends, "--exporter", "torchscript",
                   "--no-noise-floor", "--quiet", *args, cwd=model.parent)


def error_line(proc) -> str:
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cpdebug: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def save(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("func, where, exc", [
    ("missing_checkpoint", "torch.load(", "FileNotFoundError: [Errno 2] No such file or directory: 'ckpt.pth'"),
    ("broken_forward", "3 channels into", "RuntimeError"),
])
def test_the_users_code_raising_is_exit_2_naming_their_file_and_line(model, func, where, exc):
    proc = bisect(model, func)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = error_line(proc)
    assert f"my_model.py:{line_of(model, where)} in " in line and exc in line, line
    assert "your model's code raised" in line


def test_the_users_forward_raising_on_their_inputs_during_the_run_is_exit_2(model, tmp_path):
    x = np.zeros((1, 3, 8, 8), np.float32)
    x[0, 0, 0, 0] = 99.0  # the example inputs pass; these make forward raise in the reference run
    proc = bisect(model, "build", "--inputs", save(tmp_path / "x.npz", x=x))
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = error_line(proc)
    assert f"my_model.py:{line_of(model, 'raise ValueError')} in forward: ValueError: x beyond" in line, line


def test_cp_debugs_own_code_raising_under_the_users_stays_a_bug_of_cp_debug(model, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the bug report's file: here, not in the real /tmp
    proc = bisect(model, "cp_debug_raises")
    assert proc.returncode == 70 and "internal error: AttributeError" in proc.stderr, proc.stderr[-2000:]
    assert len(list(tmp_path.glob("cpdebug-internal-*.txt"))) == 1


def test_calib_takes_a_batch_of_samples_and_several_files(model, tmp_path):
    rng = np.random.default_rng(0)
    x = save(tmp_path / "x.npz", x=rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    batch = save(tmp_path / "calib.npz", x=rng.standard_normal((8, 3, 8, 8)).astype(np.float32))
    proc = bisect(model, "build", "--inputs", x, "--calib", batch, "--calib", x, "--json", tmp_path / "r.json",
                  backends="torch,ort-cpu-int8")
    assert proc.returncode in (0, 4), proc.stderr[-2000:]
    stage = json.loads((tmp_path / "r.json").read_text())["settings"]["backends"]["ort-cpu-int8"]["my_model"]
    assert stage["precision_transform"]["calibration_feeds"] == 9
    assert "calibrated on 9 samples" in proc.stdout  # the summary's line of the candidate


def test_a_calib_array_that_is_no_batch_of_samples_is_one_line(model, tmp_path):
    x = save(tmp_path / "x.npz", x=np.zeros((1, 3, 8, 8), np.float32))
    bad = save(tmp_path / "calib.npz", x=np.zeros((8, 3, 9, 9), np.float32))
    proc = bisect(model, "build", "--inputs", x, "--calib", bad, backends="torch,ort-cpu-int8")
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = error_line(proc)
    assert "calib.npz" in line and "'x'" in line and "[8, 3, 9, 9]" in line and "[1, 3, 8, 8]" in line, line


def test_an_input_in_another_dtype_is_cast_with_a_word(model, tmp_path):
    x = save(tmp_path / "x.npz", x=np.random.default_rng(0).standard_normal((1, 3, 8, 8)))  # float64
    proc = bisect(model, "build", "--inputs", x, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = "input 'x' is float64 in x.npz; cast to float32 as the example input is"
    assert said in json.loads((tmp_path / "r.json").read_text())["warnings"]


def test_token_ids_given_as_floats(model, tmp_path):
    whole = save(tmp_path / "whole.npz", ids=np.array([[1.0, 5.0, 7.0, 2.0]]))
    proc = bisect(model, "tokens", "--inputs", whole, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "input 'ids' is float64 in whole.npz; cast to int64 as the example input is" in \
        json.loads((tmp_path / "r.json").read_text())["warnings"]
    proc = bisect(model, "tokens", "--inputs", save(tmp_path / "ids.npz", ids=np.array([[1.0, 5.0, 3.7, 2.0]])))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "input 'ids' holds non-integer values (3.7 at [0, 2])" in error_line(proc)


def test_onnx_input_in_another_dtype_is_cast(tmp_path):
    import torch

    onnx_path = tmp_path / "model.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    torch.onnx.export(net, (torch.randn(1, 3, 8, 8),), onnx_path, input_names=["x"], dynamo=False)
    x = save(tmp_path / "x.npz", x=np.random.default_rng(0).standard_normal((1, 3, 8, 8)))  # float64
    proc = cpdebug("bisect", "--onnx", onnx_path, "--inputs", x, "--backends", "ort,ort-cpu-fp16", "--json",
                   tmp_path / "r.json", "--no-noise-floor")
    assert proc.returncode in (0, 4), proc.stderr[-2000:]
    assert "input 'x' is float64 in x.npz; cast to float32 as model.onnx takes" in \
        json.loads((tmp_path / "r.json").read_text())["warnings"]


def test_calib_samples_may_differ_on_the_models_open_axes(tmp_path):
    """Sentences of other lengths than the judged one calibrate a model whose words axis is open (natasha's NER:
    before, every one was refused, "input 'word_id' has shape [1, 12], but one sample is [1, 14]", exit 2); an axis
    the model fixes is still one line."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                               helper.make_node("Relu", ["h"], ["y"], name="relu")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "words", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "words", 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    x = save(tmp_path / "x.npz", x=rng.standard_normal((1, 6, 8)).astype(np.float32))
    (tmp_path / "calib").mkdir()
    for n in (5, 7, 9):
        save(tmp_path / "calib" / f"s{n}.npz", x=rng.standard_normal((1, n, 8)).astype(np.float32))
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", x, "--calib", tmp_path / "calib", "-b",
                   "ort-cpu,ort-cpu-int8", "--json", tmp_path / "r.json", "--quiet")
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    stage = json.loads((tmp_path / "r.json").read_text())["settings"]["backends"]["ort-cpu-int8"]["m"]
    assert stage["precision_transform"]["calibration_feeds"] == 3
    # fix reads --calib as bisect does (`samples.calibration.read_calib`), with the model's declared shapes
    proc = cpdebug("fix", "--onnx", tmp_path / "m.onnx", "--inputs", tmp_path / "calib", "--calib", tmp_path / "calib",
                   "-b", "ort-cpu,ort-cpu-int8", "--out", tmp_path / "fix", "--quiet")
    assert proc.returncode != 2 and "one sample is" not in proc.stderr, proc.stderr[-2000:]
    bad = save(tmp_path / "bad.npz", x=np.zeros((1, 6, 9), np.float32))  # the model's last axis is 8
    proc = cpdebug("bisect", "--onnx", tmp_path / "m.onnx", "--inputs", x, "--calib", bad, "-b", "ort-cpu,ort-cpu-int8")
    assert proc.returncode == 2 and "[1, 6, 9]" in error_line(proc), proc.stderr[-2000:]


def test_a_torch_models_open_axis_takes_calib_samples_of_other_lengths(model, tmp_path):
    """The `--torch` door: the model is exported with its `ids` axis 1 open (`--dynamic ids:1`, or inferred from the
    samples' lengths), its declared shapes read from that export (before, the export came later and every sentence
    of another length was refused)."""
    rng = np.random.default_rng(0)
    x = save(tmp_path / "x.npz", ids=rng.integers(0, 16, (1, 6)))
    (tmp_path / "calib").mkdir()
    for n in (4, 9):
        save(tmp_path / "calib" / f"s{n}.npz", ids=rng.integers(0, 16, (1, n)))
    for opened in (("--dynamic", "ids:1"), ()):
        proc = bisect(model, "tokens", "--inputs", x, "--calib", tmp_path / "calib", *opened, "--json",
                      tmp_path / "r.json", backends="ort-cpu,ort-cpu-int8")
        assert proc.returncode in (0, 1, 4), proc.stdout[-2000:] + proc.stderr[-2000:]
        stage = json.loads((tmp_path / "r.json").read_text())["settings"]["backends"]["ort-cpu-int8"]["my_model"]
        assert stage["precision_transform"]["calibration_feeds"] == 2


def test_a_module_alone_takes_its_example_from_the_inputs_and_a_candidate_may_be_the_file_itself(model, tmp_path):
    """FUNC() returning the module alone (no example): the sample given is its example (`loaders._example_of`); and
    `ort@FILE.onnx`, a one-stage model's own file as the candidate, beside others in one folder (refused as "not a
    folder" before). The file is the same net with its head's weights doubled: the head is named."""
    import torch

    x = save(tmp_path / "x.npz", x=np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    alone = bisect(model, "trained")
    assert alone.returncode == 2 and "returned a module and no example inputs" in error_line(alone)
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_model_t", model)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.trained()
    with torch.no_grad():
        net.head.weight.mul_(2.0)
    deployed = tmp_path / "deployed_fp32.onnx"
    torch.onnx.export(net, (torch.zeros(2, 3, 8, 8),), str(deployed), input_names=["x"], dynamo=False)
    (tmp_path / "other.onnx").write_bytes(deployed.read_bytes())  # the folder holds more than the candidate
    proc = bisect(model, "trained", "--inputs", x, "--json", tmp_path / "r.json", backends=f"torch,ort@{deployed}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    roots = json.loads((tmp_path / "r.json").read_text())["root_cause"]
    assert list(roots) == [f"ort@{deployed}"] and roots[f"ort@{deployed}"]["probe"] == "head", roots
    # the commands over samples take the module alone too: its example is the samples' first
    ev = cpdebug("eval", "--torch", f"{model}:trained", "--inputs", x, "--backends", "torch,ort", "--exporter",
                 "torchscript", "--metric", "cosine", "--quiet", cwd=model.parent)
    assert ev.returncode == 0, ev.stderr[-2000:]

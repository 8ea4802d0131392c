"""`cpdebug bisect` on models other than CenterPoint speaks of what happened to them (issue 54 item 7): no export
announced for a given ONNX file, no bird's-eye pictures for a classifier, no terminal escapes in the exporter's
words, status `inf` for a probe with Inf and no NaN, and no "(or input0…input0)" for a one-input model."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from tests.cli_run import cpdebug

MODEL = '''
import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class Loud(nn.Module):
    """Positive outputs near 1e5: beyond FP16's 65504, so the FP16 run holds Inf and no NaN."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return torch.relu(self.lin(x)) * 3e4 + 7e4


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot capture it (the TorchScript exporter takes over)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.lin(x)
        return -self.lin(x)


def classifier():
    torch.manual_seed(0)
    return Classifier().eval(), (torch.randn(1, 3, 8, 8),)


def loud():
    torch.manual_seed(0)
    return Loud().eval(), (torch.rand(2, 4),)


def branchy():
    torch.manual_seed(0)
    return Branchy().eval(), (torch.ones(1, 4),)
'''


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(textwrap.dedent(MODEL))
    return path


def bisect(target, *args, backends="torch,ort", exporter="torchscript"):
    return cpdebug("bisect", "--torch", target, "--backends", backends, "--exporter", exporter, "--no-noise-floor",
                   *args)


def test_a_given_onnx_file_is_not_exported(tmp_path):
    import torch

    onnx_path = tmp_path / "model.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    torch.onnx.export(net, (torch.randn(1, 3, 8, 8),), onnx_path, input_names=["x"], dynamo=False)
    proc = cpdebug("bisect", "--onnx", onnx_path, "--backends", "ort,ort-cpu-fp16", "--no-noise-floor")
    assert proc.returncode in (0, 4), proc.stderr[-2000:]
    assert "exporting" not in proc.stderr and "mapping the probes of model" in proc.stderr, proc.stderr


def test_the_html_of_a_classifier_draws_no_birds_eye_pictures(model, tmp_path):
    proc = bisect(f"{model}:classifier", "--html", tmp_path / "r.html")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bird's-eye" not in proc.stderr, proc.stderr
    assert "Bird's-eye" not in (tmp_path / "r.html").read_text()


def test_the_exporters_fallback_reason_has_no_terminal_escapes(model, tmp_path):
    proc = bisect(f"{model}:branchy", "--json", tmp_path / "r.json", exporter="auto")
    assert proc.returncode == 0, proc.stderr[-2000:]
    warnings = json.loads((tmp_path / "r.json").read_text())["warnings"]
    fallback = [w for w in warnings if "torch.export could not capture" in w]
    assert fallback and not any("\x1b" in w for w in warnings), warnings
    assert "\x1b" not in proc.stdout and "[96m" not in proc.stdout


def test_inf_without_nan_is_status_inf_and_diverges(model, tmp_path):
    proc = bisect(f"{model}:loud", "--json", tmp_path / "r.json", backends="torch,ort-cpu-fp16")
    assert proc.returncode == 1, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "r.json").read_text())["results"]["ort-cpu-fp16"]
    out = next(r for r in rows if r["probe"] == "output0")
    assert out["inf"] > 0 and out["nan"] == 0 and out["status"] == "inf", out
    assert " inf " in proc.stdout.split("cp_debug summary")[0]  # the table's status column


def test_a_one_input_models_unknown_input_names_input0_alone(model, tmp_path):
    np.savez(tmp_path / "x.npz", image=np.zeros((1, 3, 8, 8), np.float32))
    proc = bisect(f"{model}:classifier", "--inputs", tmp_path / "x.npz", "--quiet")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "(or input0)" in proc.stderr and "input0…input0" not in proc.stderr, proc.stderr

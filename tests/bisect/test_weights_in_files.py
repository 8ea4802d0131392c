"""Issue 109: a mid-sized model keeps its weights in files while the process runs (`onnx_files.STORE_LIMIT`): every
session, segment, conversion and hash moves the graph, not the weights — and the report says the same as with the
weights inline, number for number, precision facts included.

A 136 M-parameter Llama is what the limit is for (benchmarks/model_size.py's `135m8` row); here the limit is lowered
so that a 2 MB MLP takes the same path, with real files and real ONNX Runtime sessions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cp_debug.graph import onnx_files
from tests.cli_run import cpdebug

MODEL = '''
import torch


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(256, 1024)
        self.mid = torch.nn.Linear(1024, 256)
        self.out = torch.nn.Linear(256, 16)

    def forward(self, x):
        return self.out(torch.relu(self.mid(torch.nn.functional.gelu(self.up(x)))))


def build():
    torch.manual_seed(0)
    return Mlp().eval(), (torch.randn(4, 256),)
'''


def _bisect(tmp_path: Path, name: str, env: dict) -> tuple[int, dict]:
    out = tmp_path / f"{name}.json"
    proc = cpdebug("bisect", "--torch", f"{tmp_path / 'mlp.py'}:build", "-b", "torch,ort-cpu-fp16",
                   "--level", "all", "--json", out, "--quiet", env=env)
    assert out.is_file(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.returncode, json.loads(out.read_text())


@pytest.mark.parametrize("half", ["native", None], ids=["ort-float16", "emulated"])
def test_a_model_whose_weights_are_kept_in_files_reports_what_it_reports_inline(tmp_path, monkeypatch, half):
    from cp_debug.graph import weight_store

    (tmp_path / "mlp.py").write_text(MODEL)
    env = {"CPDEBUG_CACHE_DIR": str(tmp_path / "cache"), "CPDEBUG_ORT_CPU_HALF": half}
    code, inline = _bisect(tmp_path, "inline", env)
    stored_before = weight_store.in_use()
    monkeypatch.setattr(onnx_files, "STORE_LIMIT", 1 << 20)  # the MLP's 2.1 MB of weights go to files
    again, stored = _bisect(tmp_path, "stored", {**env, "CPDEBUG_CACHE_DIR": str(tmp_path / "cache2")})
    assert weight_store.in_use() and (stored_before or any(weight_store.folder().glob("*.data")))
    # the same probes, the same numbers, the same precision facts (ORT's optimised graph read in both)
    assert stored["results"] == inline["results"]
    assert stored["precision"] == inline["precision"]
    # ONNX Runtime's own CPU float16 runs this MLP's Gemms in float32 on its float16 weights Cast up at load: "ran
    # mixed", judged as it ran (it was "ran fp32", exit 3), read from its optimised graph both ways
    assert (again, stored["outcome"]) == (code, inline["outcome"]) == (0, "within_precision")
    if half == "native":
        assert stored["precision"]["ort-cpu-fp16"]["effective"] == "mixed", stored["precision"]
    facts = json.dumps(stored["precision"])
    assert "too large to dump" not in facts
    phases = stored["settings"]["phases"]  # where the time went: the main thread's phases add up to the total
    assert {"load", "export", "reference", "ort-cpu-fp16: run"} <= set(phases)
    assert list(phases)[:3] == ["check", "libraries", "load"]  # the warm-ups' imports named, not left to `other`
    held = sum(v for k, v in phases.items() if k not in ("total", "other") and not k.endswith("(beside)"))
    assert abs(held + phases["other"] - phases["total"]) < 0.01

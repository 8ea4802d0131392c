"""The library (`import cp_debug`: cp_debug/api/): its report is the command's `--json` for the same run, its errors
the command's one line, raised; `import cp_debug` stays cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.api import nets
from tests.cli_run import cpdebug

NETS = Path(nets.__file__)
# a row's figures: the numbers both runs measure (the same graph, inputs and ONNX Runtime: equal within rounding)
FIGURES = ("max_abs", "rel_rmse", "ref_absmax", "test_absmax", "local_rel_rmse", "noise_ratio")


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_the_library_report_is_the_commands_json_for_the_same_run(tmp_path):
    """The planted FP16 overflow, by `cpdebug bisect --torch nets.py:planted --json` and by `cp_debug.bisect` on the
    same module and arrays: the same outcome, first divergent probe, root cause, findings and probe rows."""
    import cp_debug

    np.savez(tmp_path / "x.npz", x=nets.sample())
    proc = cpdebug("bisect", "--torch", f"{NETS}:planted", "--inputs", tmp_path / "x.npz", "-b", "torch,ort-cpu-fp16",
                   "--json", "-", "-q")
    assert proc.returncode == 1, proc.stderr[-2000:]
    cli = json.loads(proc.stdout)
    report = cp_debug.bisect(nets.net(planted=True), (nets.sample(),), "torch,ort-cpu-fp16")
    api = report.to_json()
    assert json.loads(json.dumps(api)) == api  # strict JSON, as the command writes it
    assert set(cli) - {"runs_on"} == set(api)
    assert report.exit_code == proc.returncode == 1 and report.outcome.value == cli["outcome"] == "diverged"
    for key in ("reference", "candidates", "outcomes", "first_divergent", "root_cause", "findings", "paths",
                "candidate_specs", "judged_at", "outcome_reasons"):
        assert api[key] == cli[key], key
    assert [p["name"] for p in api["probes"]] == [p["name"] for p in cli["probes"]] == ["c1", "c2", "head", "output0"]
    for ours, theirs in zip(api["results"]["ort-cpu-fp16"], cli["results"]["ort-cpu-fp16"], strict=True):
        assert (ours["probe"], ours["status"], ours["outcome"]) == (theirs["probe"], theirs["status"],
                                                                 theirs["outcome"])
        for k in FIGURES:
            assert ours[k] == pytest.approx(theirs[k], rel=1e-4, abs=1e-9, nan_ok=True), (ours["probe"], k)
    assert report.first_divergent == "c1" and report.root_cause.probe == "c1"
    assert "FP16 overflow at c1" in report.root_cause.hint
    assert report.findings and report.findings[0]["candidate"] == "ort-cpu-fp16"
    frame = report.frame()  # the rows as `--csv` writes them
    assert list(frame["probe"]) == ["c1", "c2", "head", "output0"]
    assert frame.loc[frame["root_cause"], "probe"].tolist() == ["c1"] and frame["inf"].iloc[0] > 0
    summary = report.summary()
    lines = summary.splitlines()
    assert lines[0].startswith("ort-cpu-fp16 vs torch: diverged: beyond fp16 from c1 (the root cause)")
    assert lines[1] == "  root cause: c1" and lines[2].startswith("  why: FP16 overflow at c1")
    html = report._repr_html_()
    assert "c1" in html and "<table" in html
    from rich.console import Console

    console = Console(width=100, record=True, color_system=None)
    console.print(report)
    shown = console.export_text()
    assert "cp_debug summary" in shown and "c1" in shown and max(map(len, shown.splitlines())) <= 100


def test_the_library_raises_the_commands_one_line():
    """A mistake is the command's line, raised as its CpDebugError; a model that raises is the user's error."""
    import cp_debug
    import torch

    proc = cpdebug("bisect", "--torch", f"{NETS}:healthy", "-b", "torch,ort-cpu-fp99")
    assert proc.returncode == 2
    with pytest.raises(cp_debug.BadInputError) as caught:
        cp_debug.bisect(nets.net(), (nets.sample(),), ["torch", "ort-cpu-fp99"])
    assert proc.stderr.strip().splitlines()[-1] == f"cpdebug: error: {caught.value}"
    with pytest.raises(cp_debug.BadInputError, match="inputs 'y': SmallConvNet.forward takes x"):
        cp_debug.bisect(nets.net(), {"y": nets.sample()}, "torch,ort")  # no input y: the forward takes x

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise ValueError("the user's bug")

    with pytest.raises(cp_debug.UserCodeError, match="the user's bug"):
        cp_debug.bisect(Broken(), (nets.sample(),), "torch,ort")


def test_importing_cp_debug_and_its_pytest_plugin_imports_no_heavy_library():
    code = ("import sys, cp_debug, cp_debug.pytest_plugin; assert callable(cp_debug.bisect); "
            "cp_debug.assert_within_precision; cp_debug.Report; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'pandas', 'onnx', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "[]", out.stderr

"""The screen on CUDA (issue 87, item 4): a CUDA candidate's FP32 screen run is made on its device, not on the host's
CPU (where awml-base's took 8.1 s of a warm 11-12 s bisect on an H100 host), and it still names the branch float16
cancels behind a residual (`collapse_models.cancelled`) as the CPU does (tests/bisect/test_screen_sketch.py); its
runs are made ahead, on the screen's helper thread."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.cli_run import cpdebug

pytestmark = [pytest.mark.gpu, pytest.mark.needs("cuda", "onnxruntime-gpu")]
MODELS = Path(__file__).with_name("collapse_models.py")


def test_a_cuda_candidates_fp32_screen_runs_on_its_device_and_names_the_branch(tmp_path, monkeypatch):
    from cp_debug.bisect.stages import screen

    ran_on, threads, real = [], [], screen._screen_run

    def noting(run, spec, *args, **kwargs):
        ran_on.append((spec.device, spec.precision))
        threads.append(threading.current_thread().name)
        return real(run, spec, *args, **kwargs)

    monkeypatch.setattr(screen, "_screen_run", noting)
    proc = cpdebug("bisect", "--torch", f"{MODELS}:cancelled", "-b", "torch,ort-cuda-fp16", "--json",
                   tmp_path / "r.json", "--quiet")
    report = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1, report["outcome_reasons"]
    # the module whose own code holds the cancelling Sub, as on the CPU (tests/bisect/test_screen_sketch.py; issue
    # 108 moved it there from its child `1.inner.shifted.1`: this GPU twin kept the old name, found on an H200)
    assert report["root_cause"]["ort-cuda-fp16"]["probe"] == "1.inner.shifted", report["root_cause"]
    assert ("cuda", "fp32") in ran_on and all(device == "cuda" for device, _ in ran_on), ran_on
    # a CUDA candidate's screen starts ahead, beside the stage's runs (`screen_ahead.py`): none on the engine's thread
    assert "MainThread" not in threads and any(t.startswith("cpdebug-screen-ahead") for t in threads), threads

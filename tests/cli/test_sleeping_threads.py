"""`cpdebug` runs torch's OpenMP threads with `OMP_WAIT_POLICY=PASSIVE` (`cli.main.sleeping_threads`): idle threads
sleep instead of spinning on the cores the command's other threads need, unless the user chose a policy. Read off
libgomp itself: `OMP_DISPLAY_ENV=TRUE` makes it print the policy it took when torch loaded it, which cp_debug keeps
among the report's third-party warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


NOISY = Path(__file__).with_name("noisy.py")


def _policy(tmp_path: Path) -> str:
    """The wait policy libgomp took in a `cpdebug bisect` process."""
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--torch", f"{NOISY}:build",
                           "--backends", "torch,ort", "--json", str(out), "-q"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_DISPLAY_ENV": "TRUE", "CPDEBUG_SERVER": "off"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    caught = json.loads(out.read_text())["third_party_warnings"]
    said = [w["message"] for w in caught if "OMP_WAIT_POLICY" in w["message"]]
    assert len(said) == 1, said
    return said[0].split("=", 1)[1].strip().strip("'")


def test_torch_s_threads_sleep_when_idle(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert _policy(tmp_path) == "PASSIVE"


def test_a_policy_the_user_set_is_kept(monkeypatch):
    from cp_debug.cli.main import sleeping_threads

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    sleeping_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    sleeping_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"



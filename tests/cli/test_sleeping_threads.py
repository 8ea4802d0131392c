"""`cpdebug` runs torch's OpenMP threads with `OMP_WAIT_POLICY=PASSIVE` (`openmp.sleeping_threads`, first thing
in `cli.main.entry`, and in a Ray actor): idle threads sleep instead of spinning on the cores the command's other
threads need, unless the user chose a policy. Read off
libgomp itself: `OMP_DISPLAY_ENV=VERBOSE` makes it print what it took when torch loaded it, which cp_debug keeps among
the report's third-party warnings. Its `OMP_WAIT_POLICY` line says 'PASSIVE' when no policy was set at all; the spin
count tells the two apart: 0 for PASSIVE, 300000 unset (libgomp's default: each idle thread spins that long)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


NOISY = Path(__file__).with_name("noisy.py")


def _spin_count(tmp_path: Path) -> int:
    """How long libgomp's idle threads spin before they sleep, as it took it in a `cpdebug bisect` process."""
    out = tmp_path / "run.json"
    proc = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--torch", f"{NOISY}:build",
                           "--backends", "torch,ort", "--json", str(out), "-q"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_DISPLAY_ENV": "VERBOSE", "CPDEBUG_SERVER": "off"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    caught = json.loads(out.read_text())["third_party_warnings"]
    said = [w["message"] for w in caught if w["message"].strip().startswith("GOMP_SPINCOUNT")]
    assert len(said) == 1, said
    return int(said[0].split("=", 1)[1].strip().strip("'"))


def test_torch_s_threads_sleep_when_idle(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert _spin_count(tmp_path) == 0


def test_a_policy_the_user_set_is_kept(monkeypatch):
    from cp_debug.openmp import sleeping_threads

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    sleeping_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    sleeping_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"



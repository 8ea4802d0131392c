"""The entry point's exit (`cli.main.leave`): what Python's exit promises still happens — the exit code, unflushed
output, atexit functions, temporary folders removed, non-daemon threads and idle thread pools waited for — without the
interpreter's teardown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import atexit, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

out = Path(sys.argv[1])
def late():
    time.sleep(0.3)
    (out / "thread").write_text("done")
threading.Thread(target=late).start()  # not a daemon: the exit waits for it
pool = ThreadPoolExecutor(2)  # never shut down: its idle workers are told to stop at the exit
pool.submit(time.sleep, 0.1)
atexit.register(lambda: (out / "atexit").write_text("done"))
kept = tempfile.TemporaryDirectory(dir=out)  # removed by its finalizer at the exit
(out / "tmpname").write_text(kept.name)
print("to stdout, unflushed", end="")
sys.stderr.write("to stderr, unflushed")
from cp_debug.cli.main import leave
code = sys.argv[2]
if code == "profiled":  # as under cProfile, which writes its results at the interpreter's exit
    sys.setprofile(lambda *args: None)
    code = "0"
leave(None if code == "None" else int(code) if code.lstrip("-").isdigit() else code)
"""


def _run(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), code], capture_output=True, text=True,
                          env=env, timeout=120, cwd=ROOT)


@pytest.mark.parametrize(("code", "status"), [("0", 0), ("4", 4), ("None", 0), ("bad input", 1), ("profiled", 0)])
def test_leave_keeps_what_python_s_exit_promises(tmp_path, code, status):
    """... also under a profiler or tracer, where it leaves through the interpreter's own exit."""
    p = _run(tmp_path, code)
    assert p.returncode == status, p.stderr
    assert p.stdout == "to stdout, unflushed"
    assert p.stderr.startswith("to stderr, unflushed")
    if code == "bad input":
        assert p.stderr.splitlines()[-1].endswith("bad input")
    assert (tmp_path / "thread").read_text() == "done" and (tmp_path / "atexit").read_text() == "done"
    assert not Path((tmp_path / "tmpname").read_text()).exists()


def test_the_entry_point_exits_through_leave_with_the_command_s_code(tmp_path):
    """`python -m cp_debug.cli.main` ends a command with its exit code: 2 for a bad option, as click says it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "bisect", "--no-such-option"], capture_output=True,
                       text=True, env=env, timeout=120, cwd=ROOT)
    assert p.returncode == 2 and "No such option" in p.stderr
    p = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "--version"], capture_output=True, text=True,
                       env=env, timeout=120, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.startswith("cpdebug ")


def test_a_command_under_cprofile_writes_its_profile(tmp_path):
    """`python -m cProfile -o F -m cp_debug.cli.main …` writes F: on Python 3.12+ cProfile watches through
    `sys.monitoring` (no `sys.getprofile()`), and `leave` leaves through the interpreter's exit there too
    (`benchmarks/own_process.py --profile` on the H200's Python 3.12 wrote none before)."""
    import pstats

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    prof = tmp_path / "p.prof"
    p = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "cp_debug.cli.main", "--version"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.startswith("cpdebug "), p.stderr[-2000:]
    assert pstats.Stats(str(prof)).total_calls > 0

"""Output folders that cannot be written: a sweep that runs out of space (RLIMIT_FSIZE: every write past the limit
fails with EFBIG, as on a full disk) ends in one line, leaves no half-written file, and `--resume` finishes it; a
folder another sweep holds is refused with that sweep's pid; a folder that is not writable is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_run import cpdebug as run_cli

ROOT = Path(__file__).resolve().parents[2]
SWEEP = ("sweep", "--preset", "tiny", "--backends", "torch,ort", "--n", "2", "--shard-size", "2", "--bisect-top", "0",
         "--bootstrap", "0", "--no-html", "-q")


# `python -c` entry that runs cpdebug with RLIMIT_FSIZE set once the first file under FOLDER is opened (an audit
# hook sees every open): the export's temporary ONNX files (MBs) are written before, the sweep's shards after.
_LIMITED = """
import resource, sys
folder, size = sys.argv[1], int(sys.argv[2])
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(folder):
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
sys.addaudithook(hook)
sys.argv = ["cpdebug", *sys.argv[3:]]
from cp_debug.cli.main import main
main()
"""


def cpdebug(*args: str, fsize: tuple[Path, int] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """cpdebug in a fresh process; `fsize` (FOLDER, BYTES): files opened once FOLDER is written to cannot grow past
    BYTES (EFBIG, as on a full disk; SIGXFSZ is ignored, or it would kill the process instead)."""
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # the repo first
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    env.pop("CPDEBUG_DEBUG", None)
    entry = ["-m", "cp_debug.cli.main"] if fsize is None else ["-c", _LIMITED, str(fsize[0]), str(fsize[1])]
    return subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT,
                          preexec_fn=(lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN)) if fsize else None)


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    last = p.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("cpdebug: error: "), p.stderr
    return last


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.slow
def test_a_sweep_out_of_space_fails_in_one_line_and_resumes(tmp_path):
    out = tmp_path / "s"
    # one frame's shard file is ~14 kB, two frames' ~30 kB (the tiny preset's 40 x 40 grid): the first shard's second
    # frame cannot be written
    p = cpdebug(*SWEEP, "--out", str(out), fsize=(out / "shards", 22_000))
    assert p.returncode == 2, p.stderr
    line = _one_error_line(p)
    assert "file too large" in line and "shard-00000" in line, line
    left = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
    assert not [f for f in left if ".tmp" in f], left  # nothing half-written
    assert "sweep.json" not in left
    partial = out / "shards" / "shard-00000.partial.json"
    assert len(json.loads(partial.read_text())["frames"]) == 1  # the frame done before the disk filled up
    p = run_cli(*SWEEP, "--out", str(out), "--resume")  # in process: only the full disk needs a process of its own
    assert p.returncode in (0, 1, 4), p.stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert len(doc["frames"]) == 2 and not [f for f in doc["frames"] if f["status"] == "failed"]


def test_a_folder_held_by_another_sweep_is_refused(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'{os.getpid()}\\n'.encode())\n"
        "print('held', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        p = run_cli(*SWEEP, "--out", str(out), cwd=ROOT)  # in process: the lock is held by another process
        assert p.returncode == 2
        assert _one_error_line(p) == (f"cpdebug: error: {out} is in use by another sweep (pid {holder.pid}): wait "
                                      "for it or choose another --out")
        assert sorted(f.name for f in out.iterdir()) == [".lock"]  # the holder's folder untouched
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_released_and_a_fresh_folder_left_clean(tmp_path):
    """In process: the lock is the kernel's and goes with its holder; a refused sweep leaves no folder behind."""
    from cp_debug.errors import BadInputError
    from cp_debug.sweep.shards import locked

    out = tmp_path / "s"
    with locked(out):
        assert (out / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(BadInputError, match=rf"in use by another sweep \(pid {os.getpid()}\)"):
            with locked(out):
                pass
    assert not out.exists()  # made here, held only the lock: removed again
    with locked(out):
        (out / "manifest.json").write_text("{}")
    assert (out / ".lock").exists() and (out / "manifest.json").exists()


def test_a_sweep_that_fails_leaves_no_lock(tmp_path):
    """An error inside the locked block (a writer failing at the end, Ctrl-C) removes the lock file it held; what was
    written so far (the shards, for --resume) stays, and a folder made here and left empty goes."""
    from cp_debug.sweep.shards import locked

    out = tmp_path / "s"
    with pytest.raises(RuntimeError), locked(out):
        (out / "shards").mkdir()
        raise RuntimeError("frames.parquet could not be written")
    assert sorted(f.name for f in out.iterdir()) == ["shards"]
    with pytest.raises(KeyboardInterrupt), locked(tmp_path / "t"):
        raise KeyboardInterrupt
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, where):
    if where == "under_a_file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "s"
    else:
        if os.geteuid() == 0:  # root writes through any mode: the kernel's own read-only file system instead
            out = Path("/proc/self/cpdebug-sweep")
        else:
            (tmp_path / "ro").mkdir(mode=0o555)
            out = tmp_path / "ro" / "s"
    from typer.testing import CliRunner

    from cp_debug.cli.main import app

    res = CliRunner().invoke(app, [*SWEEP, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines()[-1].startswith(f"cpdebug: error: cannot write in {out}: "), res.stderr

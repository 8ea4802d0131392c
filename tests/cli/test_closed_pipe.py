"""A closed pipe ends a command quietly (cli/common/pipe.py), in a process of its own and through a server, as it ends
git:
no message, no traceback file, exit 141 (0 for a help page), and the files the command writes are still written whole.
Real processes and real pipes: the read end of the command's pipe is closed before it starts, so that its first write
finds no reader, whenever it comes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cp_debug.files import write_json
from tests.cli.served import serve_env, server_log
from tests.report.sample import PLANTED, build_report


@pytest.fixture(params=["alone", "served"])
def way(request, tmp_path):
    """(env, work folder, the server's socket or None): the command in a process of its own, or in a server."""
    tmp_path.chmod(0o700)
    (tmp_path / "tmp").mkdir()
    if request.param == "alone":
        env, sock = serve_env(tmp_path / "none.sock", CPDEBUG_SERVER="off"), None
    else:
        sock, env, _ = request.getfixturevalue("server")
    return {**env, "TMPDIR": str(tmp_path / "tmp")}, tmp_path, sock


def _closed(args: list[str], env: dict, cwd: Path, closed: str = "stdout") -> tuple[int, str]:
    """`cpdebug ARGS` with its stdout (or stderr) a pipe without a reader: (exit code, what the other stream got)."""
    r, w = os.pipe()
    os.close(r)
    streams = {"stdout": w, "stderr": subprocess.PIPE} if closed == "stdout" else \
        {"stdout": subprocess.PIPE, "stderr": w}
    try:
        p = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", *args], env=env, cwd=cwd, text=True,
                           timeout=300, **streams)
    finally:
        os.close(w)
    return p.returncode, p.stderr if closed == "stdout" else p.stdout


def _no_traceback_file(env: dict) -> None:
    assert not list(Path(env["TMPDIR"]).glob("cpdebug-internal-*"))


def _served_with(sock: Path | None, command: str, code: int) -> None:
    """Through a server: `command` was its last, it ended `code`, and the server serves on."""
    if sock is None:
        return
    lines = server_log(sock).splitlines()
    last = max(i for i, line in enumerate(lines) if ": command from pid " in line)
    assert lines[last].endswith(f"cpdebug {command}")
    said = [line.split(": ", 1)[1] for line in lines[last + 1:]]  # the sessions it kept may be said before its exit
    assert [x for x in said if x.startswith("exit ")][0].startswith(f"exit {code} ")
    status = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "serve", "--status"], env=serve_env(sock),
                            capture_output=True, text=True, timeout=60)
    assert "command(s) served" in status.stdout, status.stderr


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
@pytest.mark.parametrize(("args", "code"), [(["--help"], 0), (["export", "--help"], 0), (["backends"], 141),
                                          (["backends", "--json"], 141)], ids=["help", "export-help", "table", "json"])
def test_a_closed_stdout_ends_the_command_quietly(way, args, code):
    """A help page ends 0 (its reader may stop where it likes), a command 141: nothing on stderr, no traceback file
    (the table through rich, the JSON through click's echo)."""
    env, cwd, sock = way
    assert _closed(args, env, cwd) == (code, "")
    _no_traceback_file(env)
    _served_with(sock, " ".join(args), code)


def test_a_help_page_read_in_part_by_head_ends_0(way):
    """`cpdebug export --help | head -1` under `set -o pipefail`: 0, whether head left before the page was written."""
    env, cwd, sock = way
    line = f"set -o pipefail; {sys.executable} -m cp_debug.cli.main export --help | head -1"
    p = subprocess.run(["bash", "-c", line], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert (p.returncode, p.stderr) == (0, "")
    assert len(p.stdout.splitlines()) == 1
    _no_traceback_file(env)


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_report_is_written_whole_while_its_terminal_is_a_closed_pipe(way, closed):
    """`cpdebug report run.json --json again.json`: the table goes to stdout, "wrote again.json" to stderr; either
    closed, the file is still written, whole, and no temporary file is left beside it."""
    env, cwd, sock = way
    run = write_json(cwd / "run.json", build_report())
    code, other = _closed(["report", "run.json", "--json", "again.json"], env, cwd, closed)
    assert code == 141
    assert json.loads((cwd / "again.json").read_text()) == json.loads(run.read_text())
    assert sorted(p.name for p in cwd.iterdir()) == ["again.json", "run.json", "tmp"]
    if closed == "stdout":
        assert other.strip() == "wrote again.json"
    else:
        assert PLANTED in other  # the table
    _no_traceback_file(env)
    _served_with(sock, "report run.json --json again.json", 141)


def test_the_served_caller_s_closed_pipe_leaves_the_server_s_own_streams_alone(server, tmp_path):
    """After a command whose stdout had no reader, the server's next command writes to its own caller as ever."""
    sock, env, _ = server
    tmp_path.chmod(0o700)
    assert _closed(["backends"], env, tmp_path)[0] == 141
    p = subprocess.run([sys.executable, "-m", "cp_debug.cli.main", "backends", "--json"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and json.loads(p.stdout)["specs"], p.stderr
    assert "cpdebug backends --json" in server_log(sock)


def test_a_bisect_s_progress_into_a_closed_stderr_ends_141_with_its_report_whole(way):
    """The progress lines go to the terminal's copy that the third-party capture keeps (`_quiet.ThirdParty`). The tiny
    preset: the demo's bisect writes the same things in three seconds more."""
    env, cwd, sock = way
    code, out = _closed(["bisect", "--preset", "tiny", "--json", "run.json"], env, cwd, "stderr")
    assert code == 141
    assert "within precision" in out  # the table, on stdout
    assert json.loads((cwd / "run.json").read_text())["schema"] == "cp_debug.report/1"
    assert not [p.name for p in cwd.iterdir() if p.name.endswith(".tmp")]
    _no_traceback_file(env)
    _served_with(sock, "bisect --preset tiny --json run.json", 141)


SCRIPT = """
from cp_debug.cli.common.errors import handle_errors
with handle_errors():
    raise BrokenPipeError(32, "Broken pipe")
"""


@pytest.mark.parametrize("closed", [True, False])
def test_a_broken_pipe_that_reaches_the_error_mapping_is_quiet_only_where_our_output_has_no_reader(tmp_path, closed):
    """A BrokenPipeError of the program's own stdout ends it quietly with 141 even unguarded (a Python caller of
    `main()`); one of another pipe is a bug, as before."""
    env = serve_env(tmp_path / "none.sock", CPDEBUG_SERVER="off", TMPDIR=str(tmp_path))
    r, w = os.pipe()
    if closed:
        os.close(r)
    try:
        p = subprocess.run([sys.executable, "-c", SCRIPT], stdout=w, stderr=subprocess.PIPE, env=env, text=True,
                           timeout=120)
    finally:
        os.close(w)
        if not closed:
            os.close(r)
    if closed:
        assert (p.returncode, p.stderr) == (141, "")
        assert not list(tmp_path.glob("cpdebug-internal-*"))
    else:
        assert p.returncode == 70 and p.stderr.startswith("cpdebug: internal error: BrokenPipeError")

"""`cpdebug serve`: a command run in the resident server gives what it gives in a process of its own (output, report,
exit code), on the caller's streams; what the server cannot run as the caller would runs in the caller; Ctrl-C and a
caller gone interrupt the command and leave the server serving. Real processes throughout: the servers are started
by `cpdebug serve` on sockets of the tests' own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cp_debug.files import write_json
from cp_debug.server.hold import PHASES
from tests.cli.served import cpdebug, serve_env, server_log
from tests.report.sample import build_report

pytestmark = [pytest.mark.slow, pytest.mark.long]  # first under xdist (tests/conftest.py); .ci/run's second step

COLD = "off"  # CPDEBUG_SERVER_WARM_UP for the servers whose claim is their start, signals and idle end (warm.py)


def _served(sock: Path) -> int:
    return server_log(sock).count(": exit ")


def _comparable(path: Path) -> dict:
    """A report less what differs between any two runs: wall times and the store's budgets (free memory)."""
    doc = json.loads(path.read_text())
    doc.pop("wall_s", None)
    doc["settings"].pop("peak_memory", None)  # the process's peak RSS
    doc["settings"].pop("phases", None)  # its wall by phase
    for key in ("budget_mb", "device_budget_mb"):  # free host and device memory
        doc["settings"]["reference_store"].pop(key, None)
    return doc


def test_a_served_bisect_is_the_bisect_of_a_process_of_its_own(server):
    sock, env, home = server
    before = _served(sock)
    # each with a cache folder of its own (the caller's environment is the command's): both export and store
    served = cpdebug(["bisect", "--preset", "tiny", "--json", "served.json"],
                     {**env, "CPDEBUG_CACHE_DIR": str(home / "c1")}, home)
    alone = cpdebug(["bisect", "--preset", "tiny", "--json", "alone.json"],
                     {**env, "CPDEBUG_SERVER": "off", "CPDEBUG_CACHE_DIR": str(home / "c2")}, home)
    assert _served(sock) == before + 1  # the first went through the server, the second did not
    assert "cpdebug bisect --preset tiny --json served.json" in server_log(sock)
    assert served.returncode == alone.returncode == 0, served.stderr
    assert _untimed(served.stdout) == _untimed(alone.stdout)  # the table, on the caller's own stdout
    assert "within precision" in served.stdout
    assert "✓ reference torch: pts_backbone_neck_head" in served.stderr  # progress on the caller's stderr
    assert _comparable(home / "served.json") == _comparable(home / "alone.json")
    assert (home / "c1" / "exports").is_dir() and (home / "c2" / "exports").is_dir()


def test_the_next_served_command_takes_the_onnx_runtime_sessions_the_one_before_made(server):
    """ONNX Runtime's sessions kept between commands (`backends/ort/ort_kept.py`): the second of two served ORT-pair
    bisects makes no session, takes every one the first made (as a process of its own makes them), and gives the
    first's report."""
    sock, env, home = server
    base = ["bisect", "--preset", "tiny", "--backends", "ort,ort-cpu-fp16", "--level", "block", "--quiet", "--json"]
    env = {**env, "CPDEBUG_CACHE_DIR": str(home / "c3")}
    said = len(_sessions(sock))
    runs = [cpdebug([*base, f"{name}.json"], env, home) for name in ("first", "second")]
    assert [p.returncode for p in runs] == [0, 0], runs[0].stderr
    (taken1, made1), (taken2, made2) = _sessions(sock)[said:]
    # the first made what it did not find (and may take back what it kept itself: a lockstep that put its local runs
    # off runs the reference again over the stage where a probe is off, `stages/local_deferred.py`); the second took
    # as many as the first's activations (the same sessions, `made1` of them kept) and made none
    assert made1 > 0 and (taken2, made2) == (taken1 + made1, 0)
    first, second = (_comparable(home / f"{name}.json") for name in ("first", "second"))
    first["settings"].pop("export_cache")  # the first stored the exports, the second read them back
    second["settings"].pop("export_cache")
    assert second == first
    status = cpdebug(["serve", "--status"], env, home).stdout
    assert f"kept for the next command: {made1} ONNX Runtime session(s) of the last command" in status


def _sessions(sock: Path) -> list[tuple[int, int]]:
    """The server log's (sessions taken, made) of each command that had ONNX Runtime sessions."""
    return [(int(a), int(b)) for a, b in
            re.findall(r"ONNX Runtime sessions: (\d+) taken from the command before, (\d+) made", server_log(sock))]


def test_a_served_error_is_its_one_line_and_exit_code(server, tmp_path):
    """`report` of a file that is not there: an error the command gives at once, in a process of its own too (a
    bisect's comes after torch has loaded, seconds later, and is the same one line)."""
    sock, env, home = server
    tmp_path.chmod(0o700)
    served = cpdebug(["report", "nope.json"], env, tmp_path)  # in the caller's folder: nothing written
    alone = cpdebug(["report", "nope.json"], {**env, "CPDEBUG_SERVER": "off"}, tmp_path)
    assert served.returncode == alone.returncode == 2
    assert served.stderr == alone.stderr
    assert served.stderr.startswith("cpdebug: error: report file not found: nope.json")
    usage = cpdebug(["bisect", "--no-such-option"], env, tmp_path)  # click's usage error, through the server
    assert usage.returncode == 2 and "No such option" in usage.stderr
    assert list(tmp_path.iterdir()) == []
    assert "cpdebug report nope.json" in server_log(sock)
    assert "cpdebug bisect --no-such-option" in server_log(sock)


CALLER = """
import atexit, sys
from pathlib import Path
from cp_debug.cli.main import entry
out = Path(sys.argv[1])
atexit.register(lambda: out.write_text(" ".join(m for m in ("typer", "cp_debug.cli.app") if m in sys.modules)))
sys.argv = ["cpdebug", *sys.argv[2:]]
entry()
"""


def test_a_served_command_s_caller_loads_no_command(server, tmp_path):
    """The entry point hands the command to the server before it imports typer and the command modules (cli/main.py:
    0.12 CPU s of the caller instead of 0.3); run in the caller, the command has them. What it loaded is written by
    an atexit function, which `leave` runs."""
    sock, env, home = server
    tmp_path.chmod(0o700)
    before = _served(sock)
    for way, extra, loaded in (("served", {}, ""), ("alone", {"CPDEBUG_SERVER": "off"}, "typer cp_debug.cli.app")):
        p = subprocess.run([sys.executable, "-c", CALLER, str(tmp_path / way), "report", "nope.json"],
                           env={**env, **extra}, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.startswith("cpdebug: error: report file not found: nope.json"), p.stderr
        assert (tmp_path / way).read_text() == loaded, way
    assert _served(sock) == before + 1


def test_what_the_server_cannot_run_as_the_caller_would_runs_in_the_caller(server, tmp_path):
    sock, env, home = server
    before = _served(sock)
    other = cpdebug(["report", "nope.json"], {**env, "CUDA_VISIBLE_DEVICES": "7"}, tmp_path)
    assert other.returncode == 2
    first, second = other.stderr.splitlines()[:2]
    assert "was started with other CUDA_VISIBLE_DEVICES than this shell's" in first
    assert first.endswith("running it in this process")
    assert second.startswith("cpdebug: error: report file not found")
    factory = tmp_path / "mine.py"
    factory.write_text("raise SystemExit('not to be run by this test')\n")
    # a usage error after the refusal: the caller's own click stops it before the factory could be imported
    own = cpdebug(["bisect", "--model-factory", f"{factory}:make", "--no-such-option"], env, tmp_path)
    assert "--model-factory runs your own Python file" in own.stderr
    assert own.returncode == 2 and "No such option" in own.stderr
    off = cpdebug(["report", "nope.json"], {**env, "CPDEBUG_SERVER": "off"}, tmp_path)
    assert off.returncode == 2 and "running it in this process" not in off.stderr
    assert _served(sock) == before  # none of them reached it


def _held(marker: Path, **extra) -> dict:
    """`extra` and CPDEBUG_SERVER_HOLD for a caller whose command the server holds at its turn until `marker` is
    removed (cp_debug/server/hold.py: the server writes its pid to `marker` when it holds)."""
    return {**extra, "CPDEBUG_SERVER_HOLD": f"command:{marker}"}


def test_ctrl_c_interrupts_the_served_command_and_the_server_goes_on(server, tmp_path):
    """The command is held at its turn in the server (the caller's folder, environment and streams in place): the
    Ctrl-C lands there, not at some moment of a bisect the test hopes is still running. The caller comes in line
    behind a held command first, so that its "waiting" line says its Ctrl-C handler is set."""
    sock, env, home = server
    before = _served(sock)
    front, mine = tmp_path / "front-held", tmp_path / "held"
    try:
        ahead = _popen(["report", "nope.json"], _held(front, **env), tmp_path)
        _wait_for(lambda: front.exists() or ahead.poll() is not None)
        p, said = _in_line(["bisect", "--json", "x.json"], _held(mine, **env), tmp_path)
        front.unlink()
        assert ahead.wait(timeout=120) == 2
        _wait_for(lambda: mine.exists() or p.poll() is not None)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 130, said + err
        assert err.rstrip().endswith("cpdebug: interrupted")
        assert not (tmp_path / "x.json").exists()  # the bisect never ran past the Ctrl-C
        mine.unlink(missing_ok=True)
        gone = _popen(["bisect", "--json", "y.json"], _held(mine, **env), tmp_path)
        _wait_for(lambda: mine.exists() or gone.poll() is not None)
        assert gone.poll() is None
        gone.kill()  # the caller goes away: its command is interrupted
        gone.communicate(timeout=30)
        _wait_for(lambda: _served(sock) == before + 3)
    finally:
        front.unlink(missing_ok=True)  # released, should a check above have failed while one was held
        mine.unlink(missing_ok=True)
    assert server_log(sock).rstrip().splitlines()[-1].split(": ", 1)[1].startswith("exit 130")
    assert not (tmp_path / "y.json").exists()
    again = cpdebug(["report", "nope.json"], env, tmp_path)
    assert again.returncode == 2 and _served(sock) == before + 4


def test_two_callers_at_once_wait_in_line(server, tmp_path):
    """The second waits (and is told so); Ctrl-C while waiting takes a command out of the line, never run. The first
    is held at its turn in the server (cp_debug/server/hold.py) until the others are in line behind it."""
    sock, env, home = server
    write_json(tmp_path / "run.json", build_report())
    marker = tmp_path / "held"
    first = _popen(["report", "run.json", "--json", "a.json"], _held(marker, **env), tmp_path)
    try:
        _wait_for(lambda: marker.exists() or first.poll() is not None)
        assert f"command from pid {first.pid}" in server_log(sock)
        waiting, said = _in_line(["bisect", "--json", "w.json"], env, tmp_path)
        waiting.send_signal(signal.SIGINT)
        _, err = waiting.communicate(timeout=60)
        assert first.poll() is None, "the first command ended before the test could interrupt one waiting behind it"
        err = said + err
        assert waiting.returncode == 130 and "waiting" in err and err.rstrip().endswith("cpdebug: interrupted")
        second, said = _in_line(["report", "nope.json"], env, tmp_path)
    finally:
        marker.unlink(missing_ok=True)  # the first goes on
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    _, rest = second.communicate(timeout=120)
    assert "waiting" in (said + rest).splitlines()[0] and second.returncode == 2
    assert json.loads((tmp_path / "a.json").read_text())["schema"] == "cp_debug.report/1"
    assert f"command from pid {waiting.pid}" not in server_log(sock) and not (tmp_path / "w.json").exists()


def _popen(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cp_debug.cli.main", *args], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _in_line(args: list[str], env: dict, cwd: Path) -> tuple[subprocess.Popen, str]:
    """`cpdebug ARGS` once it waits in the server's line behind a held command, and its first line on stderr, which
    says so: the caller prints it after setting its Ctrl-C handler, so a SIGINT from here on goes to the server."""
    p = _popen(args, env, cwd)
    line = p.stderr.readline()
    assert "waiting" in line, line + p.communicate()[1]
    return p, line


def test_serve_status_stop_and_idle_end(tmp_path):
    """The server's idle time starts only once the test has asked what it asks (it is held before its idle clock,
    cp_debug/server/hold.py, until the test removes the marker): a short idle time that cannot end under a check.
    Its servers skip the warm-up (`CPDEBUG_SERVER_WARM_UP=off`, cp_debug/server/warm.py), which these checks do not
    depend on; such a server runs a command as the command's own process does."""
    tmp_path.chmod(0o700)
    sock, marker = tmp_path / "own.sock", tmp_path / "held"
    env = serve_env(sock, CPDEBUG_SERVER_WARM_UP=COLD)
    assert "no cpdebug server is up" in cpdebug(["serve", "--status"], env, tmp_path).stdout
    try:
        up = cpdebug(["serve", "--idle-minutes", "0.01"], {**env, "CPDEBUG_SERVER_HOLD": f"idle:{marker}"}, tmp_path)
        assert up.returncode == 0 and "cpdebug server up: pid" in up.stdout, up.stderr
        _wait_for(lambda: marker.exists())  # serving, its idle clock not started
        status = cpdebug(["serve", "--status"], env, tmp_path).stdout
        assert "0 command(s) served, idle" in status and "code current" in status
        again = cpdebug(["serve"], env, tmp_path)
        assert again.returncode == 0 and "already up" in again.stdout
    finally:
        marker.unlink(missing_ok=True)  # its idle time (0.6 s) starts
    _wait_for(lambda: not sock.exists(), timeout=60)  # idle: it stopped and took its socket with it
    assert "idle: stopping" in server_log(sock)
    assert cpdebug(["serve", "--quiet"], env, tmp_path).returncode == 0
    assert "warm-up: off (CPDEBUG_SERVER_WARM_UP=off)" in server_log(sock)
    served = cpdebug(["report", "nope.json"], env, tmp_path)
    alone = cpdebug(["report", "nope.json"], {**env, "CPDEBUG_SERVER": "off"}, tmp_path)
    assert served.returncode == alone.returncode == 2 and served.stderr == alone.stderr
    assert _served(sock) == 1 and "cpdebug report nope.json" in server_log(sock)  # the first ran in the server
    stop = cpdebug(["serve", "--stop"], env, tmp_path)
    assert "stopped the cpdebug server" in stop.stdout and not sock.exists()


@pytest.mark.parametrize("phase", PHASES)
def test_ctrl_c_at_each_phase_of_the_start_leaves_no_server(tmp_path, phase):
    """`CPDEBUG_SERVER_HOLD` holds the start at `phase` (cp_debug/server/hold.py) and says so in a file: the Ctrl-C
    lands exactly there. When the caller has ended, its server is gone and so is the socket. Without the warm-up
    (`COLD`): the phases are the same, 6-7 CPU s sooner each."""
    tmp_path.chmod(0o700)
    sock, marker = tmp_path / "s.sock", tmp_path / "held"
    p = subprocess.Popen([sys.executable, "-m", "cp_debug.cli.main", "serve"],
                         env=serve_env(sock, CPDEBUG_SERVER_HOLD=f"{phase}:{marker}", CPDEBUG_SERVER_WARM_UP=COLD),
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = None
    try:
        _wait_for(lambda: marker.exists() or p.poll() is not None)
        assert p.poll() is None, p.communicate()
        pid = int(marker.read_text())  # the server's
        if phase != "spawned":  # the server goes on starting while its caller is held
            assert sock.exists() == (phase in ("socket", "answered"))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 130, (out, err)
        assert err.rstrip().endswith("cpdebug: interrupted") and "server up" not in out
        assert not _alive(pid), "the server outlived the caller"
        assert not sock.exists()
    finally:
        if p.poll() is None:
            p.kill()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """A process `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_a_socket_folder_others_may_enter_is_refused(tmp_path):
    tmp_path.chmod(0o755)
    p = cpdebug(["serve"], serve_env(tmp_path / "s.sock"), tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith(f"cpdebug: error: {tmp_path} is not a folder of this user's alone")
    assert not (tmp_path / "s.sock").exists()


def test_a_socket_path_too_long_for_unix_is_one_line(tmp_path):
    """A deep TMPDIR made `bind` raise "AF_UNIX path too long": an internal error where the path is the user's."""
    tmp_path.chmod(0o700)
    sock = tmp_path / ("d" * 60) / ("s" * 60 + ".sock")
    p = cpdebug(["serve"], serve_env(sock), tmp_path)
    assert p.returncode == 2 and "past the 107 a Unix socket's path takes" in p.stderr, p.stderr
    assert "internal error" not in p.stderr and not sock.exists()


def _untimed(text: str) -> str:
    """`text` less its wall times and peak memory (and the padding that follows them in the table's boxes)."""
    return re.sub(r"\s+", " ", re.sub(r"\b\d+(\.\d+)? (s|GB)\b", r"N \2", text))


def _wait_for(cond, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)

"""`cpdebug serve`: start, ask after or stop this environment's resident cpdebug process (cp_debug/server/).

While it is up, every other `cpdebug` command of this environment runs in it, without loading torch, ONNX Runtime
and numba again (and on a GPU CUDA's context, ONNX Runtime's CUDA provider, the first Triton kernel): the same
output, files and exit code, seconds sooner. It stops after `--idle-minutes` without a command.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Annotated, Callable

import typer

from cp_debug.cli.common.errors import exit_status, internal_error_line
from cp_debug.cli.common.options import option
from cp_debug.cli.common.pipe import exit_code, flush, guard, unguard
from cp_debug.errors import CpDebugError, ExitCode
from cp_debug.server import client, hold, resident, warm, where

_START_S = 300  # how long a starting server may take to answer (imports on a cold disk, CUDA's first context)
_STOP_S = 30  # how long a starting server told to stop may take to go (it sees the flag within a second)


class ServerError(CpDebugError):
    """The server did not start (its log says why)."""

    exit_code = ExitCode.INTERNAL


def serve(
    ctx: typer.Context,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the server (after the command it is running, if any).")]
    = False,
    status: Annotated[bool, typer.Option("--status", help="Say whether a server is up, and what it has done.")]
    = False,
    restart: Annotated[bool, typer.Option("--restart", help="Stop the server, then start a new one (after an "
                                          "update of cp_debug or its libraries).")] = False,
    foreground: Annotated[bool, typer.Option("--foreground", help="Serve from this terminal (its log on stderr) "
                                             "until Ctrl-C, instead of in the background.")] = False,
    idle_minutes: Annotated[float, typer.Option(min=0.0, help="Stop after this many minutes without a command.")]
    = 30.0,
    quiet: Annotated[bool, option("--quiet", "-q", help="No progress while starting.")] = False,
) -> None:
    """Keep cpdebug loaded: later commands of this environment run in it, seconds sooner (`CPDEBUG_SERVER=off`
    runs one in its own process). The socket is this user's alone; the log lies beside it."""
    path = where.socket_path()
    if not (status or stop):
        where.socket_folder(path)  # before anything is loaded
    if status:
        _status(path)
        return
    if stop or restart:
        _stop(path, quiet)
        if stop:
            return
    if foreground:
        _foreground(path, idle_minutes, ctx.find_root().command)
    else:
        _start(path, idle_minutes, quiet)


def _status(path) -> None:
    st = client.ask(path, "status")
    if st is None:
        print(f"no cpdebug server is up for this environment (its socket would be {path})")
        return
    current = "current" if st.get("fingerprint") == where.fingerprint() else \
        "OUT OF DATE: cp_debug or its libraries changed since it started (`cpdebug serve --restart`)"
    waiting = f", {st['waiting']} waiting" if st["waiting"] else ""
    print(f"cpdebug server pid {st['pid']}: up {st['up_s']:.0f} s, {st['served']} command(s) served, "
          f"{'running one' if st['busy'] else 'idle'}{waiting}; "
          f"stops after {st['idle_s'] / 60:g} idle minutes; code {current}")
    if st.get("keeps"):
        print(f"kept for the next command: {'; '.join(st['keeps'])} (`cpdebug serve --stop` lets them go)")
    print(f"socket {st['socket']}; log {st['log']}")


def _stop(path, quiet: bool) -> None:
    st = client.ask(path, "stop")
    if st is None:
        if not quiet:
            print("no cpdebug server was up for this environment")
        return
    deadline = time.monotonic() + 3600
    while path.exists() and client.ask(path, "status", timeout=2) is not None and time.monotonic() < deadline:
        time.sleep(0.1)  # it ends the command it is running first
    if not quiet:
        print(f"stopped the cpdebug server (pid {st['pid']}, {st['served']} command(s) served)")


def _foreground(path, idle_minutes: float, group) -> None:
    """Serve `group`'s commands (cpdebug's own command group, this command's root) until told to stop."""
    from cp_debug.backends.ort import ort_kept
    from cp_debug.sweep import kept

    def said(step: Callable[[], str | None]) -> Callable[[], None]:  # kept CUDA sessions (ort_kept.py), logged
        def run() -> None:
            text = step()
            if text:
                server.say(text)
        return run

    server = resident.Server(path, command_runner(group, lambda text: server.say(text)), idle_s=idle_minutes * 60,
                             keeps=lambda: kept.described() + ort_kept.described(),
                             after=said(ort_kept.after_command), idle=said(ort_kept.shrink_kept),
                             idle_after_s=ort_kept.SHRINK_AFTER_S)
    server.say(f"starting for {sys.executable}")
    warm.warm_up(server.say)
    # a `--ray local` sweep's cluster and workers stay up for the next sweep, ONNX Runtime's sessions for the next
    # command
    with kept.keep_between(server.say), ort_kept.keep_between(server.say):
        server.serve(on_ready=lambda: server.say("ready"))


def command_runner(group, say: Callable[[str], None] = lambda text: None) -> Callable[[list[str]], int]:
    """`run(argv) -> exit status` for click command group `group` (cpdebug's): what a command run in one process
    would exit with. A failure outside the commands' own error mapping (`cli/common/errors.py`) is one line and 70 here
    too, never the server's end; a caller's pipe that closed is 141, as in one process (`cli/common/pipe.py`). After
    each
    command, the ONNX Runtime sessions it did not use are let go (`backends/ort/ort_kept.py`), said through `say`."""
    from cp_debug.backends.ort import ort_kept

    def run(argv: list[str]) -> int:
        saved = guard()
        try:
            code = _run(group, argv)
            flush()
            return exit_code(code)
        finally:
            unguard(saved)
            taken, made, gone = ort_kept.command_done()
            if taken or made:
                say(f"ONNX Runtime sessions: {taken} taken from the command before, {made} made"
                    + (f"; {gone}" if gone else ""))

    return run


def _run(group, argv: list[str]) -> int:
    try:
        group.main(args=argv, prog_name="cpdebug")
    except SystemExit as done:
        return exit_status(done.code)
    except Exception as err:  # noqa: BLE001 - the server outlives any one command
        print(internal_error_line(err), file=sys.stderr)
        return 70
    return 0


def _start(path, idle_minutes: float, quiet: bool) -> None:
    """Start the server in a process of its own and wait until it answers. Ctrl-C at any moment of it (or no answer)
    ends this command with no server left: the server process gone, its socket with it."""
    st = client.ask(path, "status")
    if st is not None:
        stale = "" if st.get("fingerprint") == where.fingerprint() else \
            ", running code older than this shell's: `cpdebug serve --restart` starts a current one"
        print(f"a cpdebug server is already up (pid {st['pid']}){stale}; `cpdebug serve --status` says more")
        return
    log = where.log_path(path)
    cmd = [sys.executable, "-m", "cp_debug.cli.main", "serve", "--foreground", "--idle-minutes", str(idle_minutes)]
    ctrl_c = _CtrlC()
    try:
        with open(log, "a", encoding="utf-8") as f:  # the package's parent as its folder: `-m` finds this cp_debug
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True,
                                    cwd=where.package_dir().parent)
        try:
            hold.at("spawned", proc.pid, until=ctrl_c.came)
            _wait_until_up(proc, path, log, quiet, ctrl_c)
            hold.at("answered", proc.pid, until=ctrl_c.came)
            ctrl_c.done()
        except BaseException:  # Ctrl-C or no answer: no server left starting behind the caller's back
            _end(proc)
            raise
    finally:
        ctrl_c.restore()
    if not quiet:
        print(f"cpdebug server up: pid {proc.pid}, socket {path}; stops after {idle_minutes:g} idle minutes "
              "(`cpdebug serve --stop` stops it, CPDEBUG_SERVER=off runs a command without it)")


class _CtrlC:
    """Ctrl-C noted, not raised where it lands, while this process starts a server: a KeyboardInterrupt raised inside
    `Popen` (the server's process made, its pid not yet ours) or between two steps would leave the server starting
    behind the caller. `check()` raises it where the server can be stopped; `done()` ends the start."""

    def __init__(self):
        self._came = False
        self._old = None
        if threading.current_thread() is threading.main_thread():  # where Python delivers signals
            self._old = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame) -> None:
        self._came = True

    def came(self) -> bool:
        return self._came

    def check(self) -> None:
        if self._came:
            raise KeyboardInterrupt

    def done(self) -> None:
        """The start is done: SIGINT is blocked for the moment this process has left (a Ctrl-C now comes after the
        start and changes nothing; blocking runs the handler for one that came before), then one noted is raised."""
        if self._old is not None:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            self.restore()
        self.check()

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def _wait_until_up(proc: subprocess.Popen, path, log, quiet: bool, ctrl_c: _CtrlC) -> None:
    """Wait until the server `proc` answers at `path`; KeyboardInterrupt where a Ctrl-C came, ServerError where it
    ended or did not answer in time."""
    from cp_debug.cli.common.output import StepProgress

    t0 = time.monotonic()
    with StepProgress(quiet).step("starting the cpdebug server (loading torch, ONNX Runtime, CUDA)"):
        while True:
            ctrl_c.check()
            st = client.ask(path, "status", timeout=2)
            if st is not None and st.get("pid") == proc.pid:
                return
            if proc.poll() is not None:
                raise ServerError(f"the cpdebug server ended while starting (exit {proc.returncode}): "
                                  f"{_last_line(log)} (its log: {log})")
            if time.monotonic() - t0 > _START_S:
                raise ServerError(f"the cpdebug server did not answer within {_START_S} s; its log: {log}")
            time.sleep(0.1)


def _end(proc: subprocess.Popen) -> None:
    """Stop a starting server and wait until it is gone. SIGTERM ends it at whatever stage it is: before its handlers
    are set by the signal's default action (it has no socket yet), after them through its own stop, which removes its
    socket. SIGKILL where it is still there after `_STOP_S`."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=_STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_line(log) -> str:
    try:
        lines = [ln for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(its log is empty)"

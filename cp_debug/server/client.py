"""The client half, what the entry point and `cpdebug serve` call: `forward` hands a command to this environment's
server with the caller's standard streams and waits for its exit code (passing Ctrl-C on); `ask` puts a `status` or
`stop` question."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

from cp_debug.files import umask
from cp_debug.server.where import OFF, SERVER_ENV, fingerprint, log_path, own_folder, socket_path
from cp_debug.server.wire import Lines, send


def forward(argv: list[str]) -> int | None:
    """Run the command `argv` in this environment's server and return its exit code; None where there is no server to
    take it (see the package's docstring): the caller then runs it itself."""
    if not argv or argv[0] == "serve" or os.environ.get(SERVER_ENV, "").strip().lower() in OFF:
        return None
    path = socket_path()
    if not path.exists() or not own_folder(path.parent):
        return None
    try:
        cwd = os.getcwd()
    except OSError:  # the caller's folder is gone: its own process says so
        return None
    sock = connect(path)
    if sock is None:
        return None
    try:
        return _hand_over(sock, argv, cwd, path)
    except KeyboardInterrupt:  # before the server took the command: it drops it when this connection closes
        print("cpdebug: interrupted", file=sys.stderr)
        return 130
    finally:
        sock.close()


def _hand_over(sock: socket.socket, argv: list[str], cwd: str, path: Path) -> int | None:
    """The command sent on `sock` with this process's standard streams; its exit code, or None where the server
    will not run it."""
    fds, opened = _standard_fds()
    try:
        send(sock, {"op": "run", "argv": argv, "cwd": cwd, "env": dict(os.environ), "umask": umask(),
                     "fingerprint": fingerprint(), "pid": os.getpid()}, fds)
    except OSError:
        return None
    finally:
        for fd in opened:
            os.close(fd)
    lines = Lines(sock)
    try:
        answer = lines.next()
    except (OSError, ValueError):
        answer = None
    if not answer or not answer.get("ok"):
        if answer and answer.get("why"):
            print(f"cpdebug: {answer['why']}: running it in this process", file=sys.stderr)
        return None
    return _wait(sock, lines, answer, path)


def connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.settimeout(None)
        return sock
    except OSError:  # a socket left behind by a server that is gone, or one too busy to accept
        sock.close()
        return None


def _standard_fds() -> tuple[list[int], list[int]]:
    """File descriptors 0, 1 and 2 to pass; /dev/null for any this process has closed (and the ones so opened)."""
    fds, opened = [], []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            fds.append(null)
            opened.append(null)
    return fds, opened


def _wait(sock: socket.socket, lines: Lines, answer: dict, path: Path) -> int | None:
    """Wait for the command's exit code; Ctrl-C is passed on to the server (which answers with exit 130)."""
    import signal

    def interrupt(signum, frame):
        try:
            send(sock, {"op": "interrupt"})
        except OSError:
            pass

    old = signal.signal(signal.SIGINT, interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        if answer.get("queued"):
            print(f"cpdebug: the server (pid {answer.get('pid')}) is running {answer['queued']} command(s) before "
                  "this one: waiting", file=sys.stderr)
        while True:
            try:
                msg = lines.next()
            except (OSError, ValueError):
                msg = None
            if msg is None:
                print(f"cpdebug: error: the cpdebug server (pid {answer.get('pid')}) ended during the command; its "
                      f"log is {log_path(path)}", file=sys.stderr)
                return 70  # ExitCode.INTERNAL, without importing the errors module here
            if msg.get("retry"):  # the server stopped before it began this one
                return None
            if "exit" in msg:
                return int(msg["exit"])
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def ask(path: Path, op: str, timeout: float = 10.0) -> dict | None:
    """A `status` or `stop` question to the server at `path`; None where none answers."""
    if not path.exists():
        return None
    sock = connect(path)
    if sock is None:
        return None
    with sock:
        sock.settimeout(timeout)
        try:
            send(sock, {"op": op})
            return Lines(sock).next()
        except (OSError, ValueError):
            return None


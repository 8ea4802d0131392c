"""The resident process: `Server` takes commands on its socket (an accepting thread, one thread a connection), runs
them one at a time on the main thread in the caller's folder, environment and streams, and stops when told, on
SIGINT/SIGTERM or after its idle time."""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cp_debug.files import umask
from cp_debug.server import hold
from cp_debug.server.client import ask
from cp_debug.server.where import SERVER_ENV, fingerprint, fixed_env, log_path, socket_folder
from cp_debug.server.wire import Lines, send

_RUNS_USER_CODE = ("--torch", "--model-factory")  # options that import the user's Python file


@dataclass
class _Request:
    conn: socket.socket
    argv: list[str]
    cwd: str
    env: dict[str, str]
    fds: list[int]
    pid: int
    interrupted: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class Server:
    """The resident process: `run(argv) -> exit code` is the command line (cli.main's, through
    `cli.serve_cmd.command_runner`), `idle_s` how long it waits for a command before it stops, `keeps()` what the
    commands left up for the next ones, in words (a sweep's Ray workers), `after()` what to do once a command has
    answered and its garbage is collected, `idle()` what to do once, `idle_after_s` into a wait for the next command
    (kept CUDA sessions' arenas given back to the card). `serve()` returns when it stops; the socket is gone by
    then."""

    def __init__(self, path: Path, run: Callable[[list[str]], int], *, idle_s: float, log=None,
                 keeps: Callable[[], list[str]] = list, after: Callable[[], None] = lambda: None,
                 idle: Callable[[], None] | None = None, idle_after_s: float = 0.0):
        self.path = path
        self.run = run
        self.keeps = keeps  # what commands left up for the next (said by `status`)
        self.after = after
        self.idle, self.idle_after_s = idle, idle_after_s
        self.idle_s = idle_s
        # its own copy of stderr (the log file when in the background): descriptor 2 is the caller's during a command
        self.log = log or open(os.dup(sys.stderr.fileno()), "w", encoding="utf-8", buffering=1)
        self.started = time.time()
        self.served = 0
        self.fingerprint = fingerprint()
        self.env = fixed_env(dict(os.environ))
        self.umask = umask()
        self._lock = threading.Condition()
        self._queue: list[_Request] = []
        self._current: _Request | None = None
        self._in_command = False
        self._stopping = False
        self._listener: socket.socket | None = None
        self._threads: int | None = None

    def say(self, text: str) -> None:
        try:
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {text}", file=self.log, flush=True)
        except (OSError, ValueError):  # a log nobody reads any more (a foreground server's closed pipe): serve on
            pass

    # -- the main thread --------------------------------------------------------------------------------------------
    def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        import signal

        hold.at("handler", os.getpid())
        # the handlers before the socket: a signal from here on stops the server through `_close`, socket and all
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
        try:
            self._listen()
            torch = sys.modules.get("torch")
            self._threads = torch.get_num_threads() if torch is not None else None
            threading.Thread(target=self._accept, name="cpdebug-server-accept", daemon=True).start()
            self.say(f"serving {self.path} (stops after {self.idle_s:g} s without a command)")
            if on_ready is not None:
                on_ready()
            while True:
                req = self._next()
                if req is None:
                    break
                self._serve_one(req)
        finally:
            self._close()
            for s, h in old.items():
                signal.signal(s, h)
            self.say(f"stopped after {self.served} command(s)")

    def _on_signal(self, signum, frame) -> None:
        """SIGUSR1: a caller's Ctrl-C (`interrupt_main`), for the command running; SIGINT/SIGTERM: stop (the command
        running, if any, is interrupted first; `_next` sees the flag within a second; while the socket opens, it
        opens whole and `_next` stops at once). Outside a command a caller's late Ctrl-C is dropped."""
        import signal

        if signum != signal.SIGUSR1:
            self._stopping = True
        if self._in_command:
            raise KeyboardInterrupt

    def _next(self) -> _Request | None:
        """The next command in line; None when told to stop (those in line are then left to their callers) or after
        `idle_s` without one. `idle()` runs once `idle_after_s` into the wait, outside the lock (a command that comes
        meanwhile waits in line for it)."""
        hold.at("idle", os.getpid(), until=lambda: self._stopping or bool(self._queue))
        start = time.monotonic()
        deadline, idle_at = start + self.idle_s, None if self.idle is None else start + self.idle_after_s
        while True:
            with self._lock:
                while not self._stopping and not self._queue:
                    now = time.monotonic()
                    if now >= deadline:
                        self.say("idle: stopping")
                        return None
                    if idle_at is not None and now >= idle_at:
                        break
                    until = deadline if idle_at is None else min(deadline, idle_at)
                    self._lock.wait(min(until - now, 1.0))
                else:
                    if self._stopping:
                        self.say("told to stop")
                        return None
                    req = self._queue.pop(0)
                    self._current = req
                    return req
            idle_at = None
            self.idle()

    def _serve_one(self, req: _Request) -> None:
        self.say(f"command from pid {req.pid}: cpdebug {' '.join(req.argv)}")
        t0 = time.perf_counter()
        code = 130
        try:
            if not req.interrupted:
                code = self._command(req)
        except KeyboardInterrupt:  # a Ctrl-C that came as the command returned
            code = 130
        except Exception as err:  # noqa: BLE001 - setting the command up failed: the server goes on
            self.say(f"could not run the command: {type(err).__name__}: {err}")
            code = 70
        finally:
            with self._lock:
                self._current = None
            for fd in req.fds:
                os.close(fd)
        self.served += 1
        self.say(f"exit {code} after {time.perf_counter() - t0:.2f} s")
        try:
            send(req.conn, {"exit": code})
        except OSError:
            pass
        finally:
            # the clean-up after the caller has its exit (its output is flushed and its descriptors closed above):
            # a full collection of the server's heap cost every served command ~0.13 s of its wall time (the CPU
            # machine); the next command in line still waits for it (`serve` takes it after this returns)
            try:
                self._after()
            finally:
                req.done.set()

    def _command(self, req: _Request) -> int:
        """The command in the caller's folder, environment and standard streams; everything put back after it."""
        saved_cwd = os.getcwd()
        saved_env = dict(os.environ)
        saved_argv = sys.argv
        saved_streams = (sys.stdin, sys.stdout, sys.stderr)
        saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
        try:
            try:
                os.chdir(req.cwd)
            except OSError as err:  # the caller's folder went away after it sent the command
                os.write(req.fds[2], f"cpdebug: error: cannot enter {req.cwd}: {err.strerror}\n".encode())
                return 2
            os.environ.clear()
            os.environ.update(req.env)
            os.environ[SERVER_ENV] = "off"  # a cpdebug the command starts runs on its own, not in line behind it
            for fd, theirs in zip((0, 1, 2), req.fds):
                os.dup2(theirs, fd)
            sys.stdin = open(0, "r", encoding="utf-8", closefd=False)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False, buffering=1 if os.isatty(1) else -1)
            sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
            sys.argv = ["cpdebug", *req.argv]
            try:
                self._in_command = True
                try:
                    if req.interrupted:  # a Ctrl-C that came while the command was being set up
                        raise KeyboardInterrupt
                    hold.at("command", os.getpid())
                except KeyboardInterrupt:  # before the command's own error mapping: the line it would print
                    try:
                        os.write(2, b"cpdebug: interrupted\n")
                    except OSError:  # the caller's stderr is closed, or the caller gone
                        pass
                    return 130
                return self.run(req.argv)
            finally:
                self._in_command = False
        finally:
            for stream in (sys.stdin, sys.stdout, sys.stderr):
                if stream not in saved_streams:
                    try:
                        stream.close()  # flushed; the descriptor stays (closefd=False)
                    except (OSError, ValueError):  # the caller's pipe is closed
                        pass
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            for fd, ours in zip((0, 1, 2), saved_fds):
                os.dup2(ours, fd)
                os.close(ours)
            sys.argv = saved_argv
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)

    def _after(self) -> None:
        """What a command leaves that the next one should not find: garbage holding sessions and device memory,
        torch's cached device blocks, another thread count; then `after()`."""
        import gc

        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None:
            if self._threads is not None:
                torch.set_num_threads(self._threads)
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        self.after()

    # -- the accepting thread ---------------------------------------------------------------------------------------
    def _listen(self) -> None:
        socket_folder(self.path)
        if self.path.exists():
            if ask(self.path, "status", timeout=5) is not None:
                from cp_debug.errors import BadInputError

                raise BadInputError(f"a cpdebug server already answers at {self.path}: `cpdebug serve --stop` "
                                    "stops it")
            self.path.unlink()  # left by a server that is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
        except BaseException:
            sock.close()
            raise
        self._listener = sock  # from here `_close` removes the socket
        self._inode = os.stat(self.path).st_ino
        hold.at("socket", os.getpid(), until=lambda: self._stopping)
        os.chmod(self.path, 0o600)
        sock.listen(16)

    def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            try:
                if os.stat(self.path).st_ino == self._inode:  # still ours, not a newer server's
                    self.path.unlink()
            except OSError:
                pass
        with self._lock:
            left, self._queue = self._queue, []
        for req in left:  # never started: their callers run them themselves
            for fd in req.fds:
                os.close(fd)
            try:
                send(req.conn, {"retry": True})
            except OSError:
                pass
            req.done.set()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # the listener was closed: the server is stopping
                return
            threading.Thread(target=self._talk, args=(conn,), name="cpdebug-server-conn", daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        """One connection: its question, then (for a command) what the caller says while it runs."""
        with conn:
            if not self._same_user(conn):
                return
            lines = Lines(conn)
            try:
                msg = lines.next()
            except (OSError, ValueError):
                msg = None
            if msg is None:
                return
            op = msg.get("op")
            if op == "status":
                send(conn, self.status())
                return
            if op == "stop":  # after the command running, if any
                send(conn, self.status())
                with self._lock:
                    self._stopping = True
                    self._lock.notify_all()
                return
            if op != "run":
                return
            why = self._refusal(msg, lines.fds)
            if why:
                for fd in lines.fds:
                    os.close(fd)
                send(conn, {"ok": False, "why": why})
                return
            for fd in lines.fds[3:]:
                os.close(fd)
            req = _Request(conn, list(msg["argv"]), msg["cwd"], dict(msg["env"]), lines.fds[:3], int(msg.get("pid", 0)))
            with self._lock:  # the answer goes first: the command's exit follows it on the same connection
                send(conn, {"ok": True, "pid": os.getpid(), "queued": len(self._queue) + (self._current is not None)})
                self._queue.append(req)
                self._lock.notify_all()
            self._listen_to(req, lines)

    def _listen_to(self, req: _Request, lines: Lines) -> None:
        """A caller's Ctrl-C, or its going away, interrupts its command (or takes it out of the line)."""
        import _thread
        import signal

        while not req.done.is_set():
            try:
                msg = lines.next()
            except (OSError, ValueError):
                msg = None
            if msg is not None and msg.get("op") != "interrupt":
                continue
            with self._lock:
                if req.done.is_set():
                    return
                req.interrupted = True
                if self._current is req:
                    _thread.interrupt_main(signal.SIGUSR1)
                elif req in self._queue:
                    self._queue.remove(req)
                    if msg is not None:  # Ctrl-C while it waited: the line a command's Ctrl-C prints
                        try:
                            os.write(req.fds[2], b"cpdebug: interrupted\n")
                        except OSError:
                            pass
                    for fd in req.fds:
                        os.close(fd)
                    req.done.set()
                    try:
                        send(req.conn, {"exit": 130})
                    except OSError:
                        pass
                    return
            if msg is None:
                req.done.wait()
                return

    def _same_user(self, conn: socket.socket) -> bool:
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except (AttributeError, OSError):  # not Linux: the folder's mode is the guard
            return True
        _, uid, _ = struct.unpack("3i", creds)
        return uid == os.getuid()

    def _refusal(self, msg: dict, fds: list[int]) -> str | None:
        """Why this server cannot run the command as the caller would (None: it can)."""
        if len(fds) < 3:
            return "the server got no standard streams with the command"
        if msg.get("fingerprint") != self.fingerprint:
            return (f"the cpdebug server (pid {os.getpid()}) runs another cp_debug or other libraries than this "
                    "shell's (code changed since it started); `cpdebug serve --restart` starts a current one")
        theirs = fixed_env(msg.get("env", {}))
        differ = sorted(k for k in set(theirs) | set(self.env) if theirs.get(k) != self.env.get(k))
        if differ:
            return (f"the cpdebug server (pid {os.getpid()}) was started with other {', '.join(differ[:3])}"
                    f"{' …' if len(differ) > 3 else ''} than this shell's, which libraries read once")
        if msg.get("umask") != self.umask:
            return f"the cpdebug server (pid {os.getpid()}) has another umask than this shell"
        argv = msg.get("argv", [])
        user_code = [a for a in argv if a.split("=", 1)[0] in _RUNS_USER_CODE]
        if user_code:
            return (f"{user_code[0].split('=', 1)[0]} runs your own Python file, which is imported fresh in a process "
                    "of its own")
        return None

    def status(self) -> dict:
        with self._lock:
            busy = self._current is not None
            waiting = len(self._queue)
        return {"pid": os.getpid(), "socket": str(self.path), "log": str(log_path(self.path)),
                "up_s": round(time.time() - self.started, 1), "served": self.served, "busy": busy,
                "waiting": waiting, "idle_s": self.idle_s, "fingerprint": self.fingerprint,
                "python": sys.executable, "keeps": self.keeps()}

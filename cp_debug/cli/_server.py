"""A resident cpdebug process (`cpdebug serve`) and the client half that hands it every other command.

Every `cpdebug` command starts by importing torch, ONNX Runtime and numba, and on a GPU by opening CUDA's context,
loading ONNX Runtime's CUDA provider and making the first Triton kernel: 2.5-3.5 s of a warm 7.5 s bisect on the
H100, all of it the same in every run. The server pays for them once and keeps them. While one is up for this
environment, `forward` (the first thing `cli.main.entry` does) sends it the command — the argument list, the
caller's folder, environment and umask, and the caller's own standard streams (passed over the socket, so the
output lands on the caller's terminal or pipe as if written there, progress bars and colours included) — and the
caller exits with the command's exit code. Ctrl-C in the caller interrupts the command in the server (exit 130, as
in one process); a caller that goes away interrupts it too.

A command runs in the caller's own process instead (`forward` returns None) when no server is up, when
`CPDEBUG_SERVER=off`, and when the server cannot run it exactly as the caller would: another cp_debug or other
installed libraries than the caller's (`fingerprint`), an environment variable read when a library loads that
differs (`_FIXED_AT_START`), another umask, or an option that runs the user's own Python file (its imports would
stay cached in the server). The caller is told why in one line on stderr.

One command runs at a time, on the server's main thread (where Python delivers Ctrl-C); the others wait in line.
The socket lives in a folder only its user may enter (`$XDG_RUNTIME_DIR` or the temporary folder), and the server
answers only its own user (SO_PEERCRED). Nothing of a command outlives it but what is process-wide by nature:
imported modules, CUDA's context, thread pools, and caches keyed by the content they hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cp_debug.files import tree_stamp, umask

SERVER_ENV = "CPDEBUG_SERVER"  # "off": every command runs in its own process
SOCKET_ENV = "CPDEBUG_SERVER_SOCKET"  # the socket's path, instead of the default one of this environment
_OFF = ("off", "0", "no", "false")
_RUNS_USER_CODE = ("--torch", "--model-factory")  # options that import the user's Python file
# environment variables a library reads once, when it loads or initialises: a server started under other values
# cannot honour the caller's (CUDA_VISIBLE_DEVICES after CUDA's context exists, OMP_NUM_THREADS after torch loads)
_FIXED_AT_START = ("CUDA_", "NVIDIA_", "LD_", "PYTHON", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "NUMBA_", "TORCH",
                   "PYTORCH_", "ORT_", "TRITON_", "CUDNN_", "CUBLAS_", "NCCL_", "RAY_", "MPLBACKEND")
_LINE_MAX = 1 << 24  # a request's JSON line (the environment is most of it)


# -- where, and which ------------------------------------------------------------------------------------------------

def package_dir() -> Path:
    return Path(__file__).resolve().parents[1]


def socket_path() -> Path:
    """This user's and this environment's socket (`CPDEBUG_SERVER_SOCKET` names another): one server per Python
    environment and cp_debug copy, in a folder only the user may enter."""
    given = os.environ.get(SOCKET_ENV, "").strip()
    if given:
        return Path(given)
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    tag = hashlib.sha1(f"{sys.prefix}\0{package_dir()}".encode()).hexdigest()[:12]
    return Path(base) / f"cpdebug-{os.getuid()}" / f"server-{tag}.sock"


def log_path(sock: Path) -> Path:
    return sock.with_suffix(".log")


def fingerprint() -> str:
    """What the code a command would run is: the interpreter, every cp_debug source file (path, size, time) and the
    folders packages are installed into (pip adds and removes entries there, which changes their times). A few
    milliseconds; a server whose fingerprint differs runs other code and is not used."""
    import sysconfig

    h = hashlib.sha1(f"{sys.executable}\0{sys.version}\0".encode())
    paths = sysconfig.get_paths()
    dirs = sorted({paths.get("purelib", ""), paths.get("platlib", "")} - {""})
    try:
        import site

        dirs.append(site.getusersitepackages())
    except (AttributeError, ImportError):  # pragma: no cover - a trimmed interpreter
        pass
    for d in dirs:
        try:
            h.update(f"{d}\0{os.stat(d).st_mtime_ns}\0".encode())
        except OSError:
            h.update(f"{d}\0-\0".encode())
    h.update(repr(tree_stamp(package_dir(), ".py")).encode())
    return h.hexdigest()


def fixed_env(env: dict[str, str]) -> dict[str, str]:
    """The variables of `env` that must be the same in the caller and the server (`_FIXED_AT_START`)."""
    return {k: v for k, v in env.items() if k.startswith(_FIXED_AT_START)}


def _own_folder(folder: Path) -> bool:
    """`folder` is ours and nobody else's: owned by this user, no access for group or others."""
    try:
        st = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def socket_folder(sock: Path) -> Path:
    """The folder of `sock`, made (mode 700) where missing; one BadInputError line where others may enter it."""
    folder = sock.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _own_folder(folder):
        from cp_debug.errors import BadInputError

        raise BadInputError(f"{folder} is not a folder of this user's alone (mode 700): the server's socket cannot "
                            f"live there; remove it, `chmod 700` it, or name another socket with {SOCKET_ENV}")
    return folder


# -- the wire: one JSON object a line, file descriptors beside the first -----------------------------------------------

def _send(sock: socket.socket, msg: dict, fds: list[int] | None = None) -> None:
    data = (json.dumps(msg) + "\n").encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


class _Lines:
    """JSON lines read from a socket, and the file descriptors that came with them."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []

    def next(self) -> dict | None:
        """The next message, or None at the end of the connection."""
        while b"\n" not in self.buf:
            if len(self.buf) > _LINE_MAX:
                raise ValueError("message too long")
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 8)
            self.fds.extend(fds)
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)


# -- the client -------------------------------------------------------------------------------------------------------

def forward(argv: list[str]) -> int | None:
    """Run the command `argv` in this environment's server and return its exit code; None where there is no server to
    take it (see the module docstring): the caller then runs it itself."""
    if not argv or argv[0] == "serve" or os.environ.get(SERVER_ENV, "").strip().lower() in _OFF:
        return None
    path = socket_path()
    if not path.exists() or not _own_folder(path.parent):
        return None
    try:
        cwd = os.getcwd()
    except OSError:  # the caller's folder is gone: its own process says so
        return None
    sock = _connect(path)
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
        _send(sock, {"op": "run", "argv": argv, "cwd": cwd, "env": dict(os.environ), "umask": umask(),
                     "fingerprint": fingerprint(), "pid": os.getpid()}, fds)
    except OSError:
        return None
    finally:
        for fd in opened:
            os.close(fd)
    lines = _Lines(sock)
    try:
        answer = lines.next()
    except (OSError, ValueError):
        answer = None
    if not answer or not answer.get("ok"):
        if answer and answer.get("why"):
            print(f"cpdebug: {answer['why']}: running it in this process", file=sys.stderr)
        return None
    return _wait(sock, lines, answer, path)


def _connect(path: Path) -> socket.socket | None:
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


def _wait(sock: socket.socket, lines: _Lines, answer: dict, path: Path) -> int | None:
    """Wait for the command's exit code; Ctrl-C is passed on to the server (which answers with exit 130)."""
    import signal

    def interrupt(signum, frame):
        try:
            _send(sock, {"op": "interrupt"})
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
    sock = _connect(path)
    if sock is None:
        return None
    with sock:
        sock.settimeout(timeout)
        try:
            _send(sock, {"op": op})
            return _Lines(sock).next()
        except (OSError, ValueError):
            return None


# -- the server -------------------------------------------------------------------------------------------------------

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
    """The resident process: `run(argv) -> exit code` is the command line (cli.main), `idle_s` how long it waits
    for a command before it stops. `serve()` returns when it stops; the socket is gone by then."""

    def __init__(self, path: Path, run: Callable[[list[str]], int], *, idle_s: float, log=None):
        self.path = path
        self.run = run
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
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {text}", file=self.log, flush=True)

    # -- the main thread --------------------------------------------------------------------------------------------
    def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        import signal

        self._listen()
        torch = sys.modules.get("torch")
        self._threads = torch.get_num_threads() if torch is not None else None
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
        threading.Thread(target=self._accept, name="cpdebug-server-accept", daemon=True).start()
        self.say(f"serving {self.path} (stops after {self.idle_s:g} s without a command)")
        if on_ready is not None:
            on_ready()
        try:
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
        running, if any, is interrupted first; `_next` sees the flag within a second). Outside a command a caller's
        late Ctrl-C is dropped."""
        import signal

        if signum != signal.SIGUSR1:
            self._stopping = True
        if self._in_command:
            raise KeyboardInterrupt

    def _next(self) -> _Request | None:
        """The next command in line; None when told to stop (those in line are then left to their callers) or after
        `idle_s` without one."""
        deadline = time.monotonic() + self.idle_s
        with self._lock:
            while not self._stopping and not self._queue:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.say("idle: stopping")
                    return None
                self._lock.wait(min(left, 1.0))
            if self._stopping:
                self.say("told to stop")
                return None
            req = self._queue.pop(0)
            self._current = req
            return req

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
            self._after()
        self.served += 1
        self.say(f"exit {code} after {time.perf_counter() - t0:.2f} s")
        try:
            _send(req.conn, {"exit": code})
        except OSError:
            pass
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
                if req.interrupted:  # a Ctrl-C that came while the command was being set up
                    raise KeyboardInterrupt
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
        torch's cached device blocks, another thread count."""
        import gc

        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None:
            if self._threads is not None:
                torch.set_num_threads(self._threads)
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()

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
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._listener = sock
        self._inode = os.stat(self.path).st_ino

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
                _send(req.conn, {"retry": True})
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
            lines = _Lines(conn)
            try:
                msg = lines.next()
            except (OSError, ValueError):
                msg = None
            if msg is None:
                return
            op = msg.get("op")
            if op == "status":
                _send(conn, self.status())
                return
            if op == "stop":  # after the command running, if any
                _send(conn, self.status())
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
                _send(conn, {"ok": False, "why": why})
                return
            for fd in lines.fds[3:]:
                os.close(fd)
            req = _Request(conn, list(msg["argv"]), msg["cwd"], dict(msg["env"]), lines.fds[:3], int(msg.get("pid", 0)))
            with self._lock:  # the answer goes first: the command's exit follows it on the same connection
                _send(conn, {"ok": True, "pid": os.getpid(), "queued": len(self._queue) + (self._current is not None)})
                self._queue.append(req)
                self._lock.notify_all()
            self._listen_to(req, lines)

    def _listen_to(self, req: _Request, lines: _Lines) -> None:
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
                        _send(req.conn, {"exit": 130})
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
                "python": sys.executable}


def command_runner(group) -> Callable[[list[str]], int]:
    """`run(argv) -> exit status` for click command group `group` (cpdebug's): what a command run in one process
    would exit with. A failure outside the commands' own error mapping (`cli/_errors.py`) is one line and 70 here
    too, never the server's end."""
    from cp_debug.cli._errors import exit_status, internal_error_line

    def run(argv: list[str]) -> int:
        try:
            group.main(args=argv, prog_name="cpdebug")
        except SystemExit as done:
            return exit_status(done.code)
        except Exception as err:  # noqa: BLE001 - the server outlives any one command
            print(internal_error_line(err), file=sys.stderr)
            return 70
        return 0

    return run


def warm_up(say: Callable[[str], None]) -> None:
    """Load what every command loads: cp_debug's modules (torch, numba and scipy with them), the comparison
    kernels, ONNX Runtime, onnx, onnx-graphsurgeon, pandas, matplotlib; on a GPU, CUDA's context, ONNX Runtime's
    CUDA provider and the first Triton comparison kernel. What fails here is only logged: the command that needs it
    will say so itself."""
    import importlib
    import pkgutil

    import cp_debug

    t0 = time.perf_counter()
    for mod in pkgutil.walk_packages(cp_debug.__path__, "cp_debug."):
        try:
            importlib.import_module(mod.name)
        except Exception as err:  # noqa: BLE001 - an optional extra missing: its command says so when asked
            say(f"warm-up: {mod.name} not loaded ({type(err).__name__}: {err})")
    for name in ("onnxruntime", "onnx", "onnx_graphsurgeon", "pandas", "matplotlib.colors", "rich.table",
                 "rich.live", "rich.progress"):
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001
            say(f"warm-up: {name} not loaded ({type(err).__name__}: {err})")
    try:
        _numba_kernels()
    except Exception as err:  # noqa: BLE001
        say(f"warm-up: the comparison kernels not loaded ({type(err).__name__}: {err})")
    say(f"warm-up: modules and kernels loaded in {time.perf_counter() - t0:.2f} s")
    try:
        import torch

        if torch.cuda.is_available():
            t0 = time.perf_counter()
            torch.cuda.init()
            torch.zeros(1, device="cuda")
            _ort_cuda_provider()
            from cp_debug.compare.fused_diff import warm_up as triton_warm_up

            triton_warm_up()
            say(f"warm-up: CUDA, ONNX Runtime's CUDA provider and Triton in {time.perf_counter() - t0:.2f} s")
    except Exception as err:  # noqa: BLE001
        say(f"warm-up: the GPU part failed ({type(err).__name__}: {err})")


def _numba_kernels() -> None:
    """Load the comparison kernels from numba's cache folder for each dtype they take (0.6 s at a first call)."""
    import numpy as np

    from cp_debug.compare import kernels

    if not kernels.available():
        return
    for dtype in kernels.SINGLE:
        a = np.zeros((1, 8, 8), dtype)
        kernels.diff_parts(a.ravel(), a.ravel(), 0.0, 0.0)
        kernels.channel_abs_sum(a, a)


def _ort_cuda_provider() -> None:
    """Load ONNX Runtime's CUDA provider library (and cuDNN, cuBLAS with it) by running a one-node graph on it."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
    sess.run(None, {"x": np.ones(1, np.float32)})

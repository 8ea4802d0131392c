"""Where this environment's server lives (its socket, log and folder) and which code and environment it runs
(its fingerprint, the variables fixed at its start): what the client, the server and `cpdebug serve` agree on."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from pathlib import Path

from cp_debug.files import tree_stamp

SERVER_ENV = "CPDEBUG_SERVER"  # "off": every command runs in its own process
OFF = ("off", "0", "no", "false")  # the spellings of "off" in the server's variables
SOCKET_ENV = "CPDEBUG_SERVER_SOCKET"  # the socket's path, instead of the default one of this environment
UNIX_PATH_MAX = 107  # the bytes of a Unix socket's path (Linux's sun_path: 108 with its NUL)
# environment variables a library reads once, when it loads or initialises: a server started under other values
# cannot honour the caller's (CUDA_VISIBLE_DEVICES after CUDA's context exists, OMP_NUM_THREADS after torch loads)
FIXED_AT_START = ("CUDA_", "NVIDIA_", "LD_", "PYTHON", "OMP_", "GOMP_", "MKL_", "OPENBLAS_", "KMP_", "NUMBA_", "TORCH",
                  "PYTORCH_", "ORT_", "TRITON_", "CUDNN_", "CUBLAS_", "NCCL_", "RAY_", "MPLBACKEND",
                  "CPDEBUG_CUDA_SYNC")


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
    """The variables of `env` that must be the same in the caller and the server (`FIXED_AT_START`)."""
    return {k: v for k, v in env.items() if k.startswith(FIXED_AT_START)}


def own_folder(folder: Path) -> bool:
    """`folder` is ours and nobody else's: owned by this user, no access for group or others."""
    try:
        st = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def socket_folder(sock: Path) -> Path:
    """The folder of `sock`, made (mode 700) where missing; one BadInputError line where others may enter it or the
    path is too long for a Unix socket (a deep TMPDIR: `bind` raised "AF_UNIX path too long", an internal error)."""
    if len(os.fsencode(str(sock))) > UNIX_PATH_MAX:
        from cp_debug.errors import BadInputError

        raise BadInputError(f"the server's socket {sock} is {len(os.fsencode(str(sock)))} bytes long, past the "
                            f"{UNIX_PATH_MAX} a Unix socket's path takes: name a shorter one with {SOCKET_ENV}")
    folder = sock.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not own_folder(folder):
        from cp_debug.errors import BadInputError

        raise BadInputError(f"{folder} is not a folder of this user's alone (mode 700): the server's socket cannot "
                            f"live there; remove it, `chmod 700` it, or name another socket with {SOCKET_ENV}")
    return folder


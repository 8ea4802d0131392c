"""ONNX Runtime sessions kept between the commands of a resident server (`cpdebug serve`; issue 87, item 4).

A served bisect made every session anew on every command: each probed graph prepared (probes exposed, FP16
converted), ONNX Runtime's session made (its graph optimised, written and read back for the precision facts), and
each session's first run (on CUDA, cuDNN picking each convolution's algorithm). In the server (`keep_between`), an
`OrtRunner` hands what its activation made back here when it is done (`put`), under a key of everything that made
it — the graph's bytes (or a file's size and time), the spec, the probes, the options, the determinism settings,
`CPDEBUG_ORT_CPU_HALF` — and a runner of the same key in a later command takes it (`take`) instead of making its own.
What a command did not use is let go when it ends (`command_done`): between commands the server holds at most the
last command's sessions, at most `CPDEBUG_SERVER_SESSIONS` of them (256; 0: none kept), none where less than a
quarter of the host's memory is free as it is handed back, and no CPU session once the server has grown by more
than 1 GiB since it began to keep: a CPU session holds more than its graph (the demo preset's 136 CPU sessions, 66
MB of graphs, held 3 GB: the activations ONNX Runtime plans per session), so the keep stays with the models whose
sessions cost more to make than to hold. Only a bisect's runners keep (`wanted`).

CUDA sessions are kept as well. A CUDA session's arena keeps the largest run it served — the ORT pair's awml-base
sessions at `--level all` held 46-66 GB of an H200 between commands — and commands that come one after another run
fastest on arenas already grown. So right after a command (`after_command`) the CUDA sessions are let go only where
the card has less than half its memory free; once the server has waited `SHRINK_AFTER_S` for the next command
(`shrink_kept`), each kept CUDA session runs once more on zeros of an input shape it ran, fetching one output to the
host, under ONNX Runtime's run option that frees the arena's unused regions (`ort_session.shrink_arena`): the card
then held 2.3-2.9 GB in all. Measured on that H200 (docs/measurements.md), six served ORT-pair bisects in a row:
4.73 s (every session made, one at a time to be heard), then 1.77, 1.48, 1.52, 1.51, 1.44 s (all 10 taken), against
2.40-2.89 s with every session made anew; shrunk after every command instead of when idle, 3.1-3.3 s (the next
command waited for the shrinking, and its runs grew the arenas again). The growth limit above is the host's, for CPU
sessions: a CUDA session's host memory is its graph; what a first CUDA command loads (cuDNN's, cuBLAS's kernels) is
the process's.

What ONNX Runtime says while a session is made and on its first run at an input shape goes to file descriptor 2 from
its default logger, and names no session; a command served from kept sessions must still give the report the third-
party warnings its own process gives. So, while keeping, an activation, and each first run at an input shape new to
its session, happen one at a time in the process, inside `export.said.Said` (its lock, `SPEAKING`; a run's fd 2
alone, an activation's Python warnings and log records too: the graph's preparation speaks in Python, the FP16
conversion's overflow warning): what they said is kept with the session and said again (`say_again`) when a later
command takes it, and at that command's first run at each shape — itself never inside another thread's `Said`,
which would keep those lines as its own session's too (`_say_again`). Where that cannot be heard (fd 2 a terminal:
`--verbose`; another thread speaking for over `_WAIT_S`) or a run failed, the session is not kept.

Outside the server nothing is kept and nothing changes: `keeping()` is False, runners make and drop their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from cp_debug.heap import meminfo, resident

SESSIONS_ENV = "CPDEBUG_SERVER_SESSIONS"  # how many sessions the server keeps between commands, at most
_DEFAULT_MAX = 256
_FREE_SHARE = 0.25  # a session is kept while this share of the host's memory stays free
_WAIT_S = 30.0  # how long a keeping runner waits for another thread's `Said` before it gives keeping up

_GROWTH = 1 << 30  # kept CPU sessions let go where the process has grown by more than this since it began to keep
_CARD_FREE_SHARE = 0.5  # kept CUDA sessions let go where less of the card than this is free after a command
SHRINK_AFTER_S = 10.0  # a server this long without a command gives its kept CUDA sessions' arenas back
_KEEP = False
_wanted = 0  # commands' blocks that want their runners kept (`wanted`)
_max = _DEFAULT_MAX  # sessions kept at most (`CPDEBUG_SERVER_SESSIONS`, read as keeping begins)
_base_rss: int | None = None  # the process's resident bytes when it began to keep
_held: dict[str, list["Held"]] = {}  # key -> what is kept under it (runners of one key may be active at once)
_lock = threading.Lock()
_command = 0  # the serial of the command now running
_counts = {"taken": 0, "made": 0}  # in the command now running


@dataclass
class Held:
    """One runner's activation as kept: its fields (`state`), what making it said, what its first run at each input
    shape said (`runs`: signature -> `Said.to_json()`)."""

    key: str
    state: dict
    said: dict
    runs: dict = field(default_factory=dict)
    used: int = 0  # the serial of the command that last used it
    spoiled: bool = False  # a run failed, or what one said could not be heard: not kept
    device: str = "cpu"  # "cuda": its arena given back once the server is idle (`shrink`)
    shrink: Callable[[], None] | None = None

    def close(self) -> None:
        self.state.clear()  # the sessions go with the last reference to them


@contextlib.contextmanager
def keep_between(say: Callable[[str], None] = lambda text: None) -> Iterator[None]:
    """While in it (the server's life), runners keep their sessions for the next command; all let go at its end."""
    global _KEEP, _base_rss, _max
    raw = os.environ.get(SESSIONS_ENV, "").strip()
    _max = int(raw) if raw.isdigit() else _DEFAULT_MAX
    if raw and not raw.isdigit():
        say(f"{SESSIONS_ENV}={raw!r} is no whole number of sessions: {_DEFAULT_MAX} kept at most")
    _KEEP, _base_rss = _max > 0, resident()
    if not _KEEP:
        say(f"ONNX Runtime sessions: none kept between commands ({SESSIONS_ENV}=0)")
    try:
        yield
    finally:
        _KEEP = False
        release_all()


def keeping() -> bool:
    """Whether runners made now keep their sessions: in the server, inside `wanted()`."""
    return _KEEP and _wanted > 0


def serving() -> bool:
    """Whether this process is a server that keeps sessions between commands (`keep_between`)."""
    return _KEEP


@contextlib.contextmanager
def wanted() -> Iterator[None]:
    """Runners made inside keep their sessions where the server keeps (`cpdebug bisect`: its graphs and input shapes
    come back command after command). Not a sweep's lanes: each frame an input shape of its own, each a first run
    to hear one at a time and keep the words of."""
    global _wanted
    with _lock:
        _wanted += 1
    try:
        yield
    finally:
        with _lock:
            _wanted -= 1


def take(key: str) -> Held | None:
    """A session kept under `key`, handed over (no longer held), what making it said said again; None where none."""
    with _lock:
        got = _held.get(key)
        held = got.pop() if got else None
        if got is not None and not got:
            del _held[key]
        _counts["taken" if held else "made"] += 1
    if held is not None:
        held.used = _command
        _say_again(held.said)
    return held


def put(held: Held) -> None:
    """`held` kept for the next command, where keeping and room remain; else let go."""
    roomy = _KEEP and not held.spoiled and _room()
    with _lock:
        if roomy and sum(len(v) for v in _held.values()) < _max:
            held.used = _command
            _held.setdefault(held.key, []).append(held)
            return
    held.close()


def command_done() -> tuple[int, int, str | None]:
    """The command ended: what it did not use is let go, and every CPU session where the process has grown by more
    than `_GROWTH` since it began to keep. Returns (sessions taken from the keep, made) by it, and why the CPU
    sessions went (None)."""
    global _command
    with _lock:
        counts = (_counts["taken"], _counts["made"])
        _counts.update(taken=0, made=0)
        done, _command = _command, _command + 1
    let_go(lambda h: h.used != done)
    now = resident() if _held else None
    grown = None if now is None or _base_rss is None else now - _base_rss
    if grown is not None and grown > _GROWTH and let_go(lambda h: h.device == "cpu"):
        return (*counts, f"no CPU session kept: the server has grown by {grown / 2**30:.1f} GiB since it began to "
                         f"keep them (more than {_GROWTH / 2**30:.0f} GiB)")
    return (*counts, None)


def after_command() -> str | None:
    """Once a command has answered and its values are collected (the server's clean-up): every kept CUDA session let
    go where the card has less than `_CARD_FREE_SHARE` of its memory free, their arenas as the command left them.
    Returns why they went, or None."""
    with _lock:
        cuda = any(h.device == "cuda" for v in _held.values() for h in v)
    card = _card() if cuda else None
    if card is not None and card[0] < _CARD_FREE_SHARE * card[1] and let_go(lambda h: h.device == "cuda"):
        return (f"no CUDA session kept: {card[0] / 2**30:.1f} of the card's {card[1] / 2**30:.1f} GiB free, "
                f"less than {_CARD_FREE_SHARE:.0%}")
    return None


def shrink_kept() -> str | None:
    """Each kept CUDA session's arena given back to the card (`Held.shrink`; one whose shrinking fails is let go):
    what the server does once it has waited `SHRINK_AFTER_S` for the next command. Says what it did, or None."""
    with _lock:
        cuda = [h for v in _held.values() for h in v if h.device == "cuda" and h.shrink is not None]
    failed = set()
    for h in cuda:
        try:
            h.shrink()
        except Exception:  # noqa: BLE001 - ONNX Runtime's or numpy's refusal: the session is not worth its arena
            failed.add(id(h))
    let_go(lambda h: id(h) in failed)
    if not cuda:
        return None
    card = _card()
    free = f"; the card {card[0] / 2**30:.1f} of {card[1] / 2**30:.1f} GiB free" if card else ""
    return (f"the arenas of {len(cuda) - len(failed)} kept CUDA session(s) given back{free}"
            + (f"; {len(failed)} that could not shrink let go" if failed else ""))


def let_go(which: Callable[["Held"], bool]) -> int:
    """The kept sessions `which` picks let go; how many."""
    with _lock:
        gone = [h for v in _held.values() for h in v if which(h)]
        for key in list(_held):
            _held[key] = [h for h in _held[key] if not which(h)]
            if not _held[key]:
                del _held[key]
    for h in gone:
        h.close()
    return len(gone)


def release_all() -> None:
    let_go(lambda h: True)


def _card() -> tuple[int, int] | None:
    """(free, total) bytes of the current CUDA device, through torch where the process has it and CUDA up."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        free, total = torch.cuda.mem_get_info()
    except Exception:  # noqa: BLE001 - no CUDA runtime to ask: nothing to go by
        return None
    return int(free), int(total)


def described() -> list[str]:
    """What is kept now, in words (`cpdebug serve --status`)."""
    with _lock:
        n = sum(len(v) for v in _held.values())
    return [f"{n} ONNX Runtime session(s) of the last command"] if n else []


@contextlib.contextmanager
def speaking(fd2_only: bool = False) -> Iterator[Any]:
    """A `Said` around the block, entered once no other thread is inside one (within `_WAIT_S`); None where it
    could not be: the block runs all the same, unheard."""
    from cp_debug.export.said import Said

    with _alone() as alone:
        if not alone:
            yield None
            return
        with Said(fd2_only) as said:
            yield said


@contextlib.contextmanager
def _alone() -> Iterator[bool]:
    """The block with no other thread inside a `Said` (`export.said.SPEAKING` held); False where none was free
    within `_WAIT_S` (the block runs all the same)."""
    from cp_debug.export.said import SPEAKING

    alone = SPEAKING.acquire(timeout=_WAIT_S)
    try:
        yield alone
    finally:
        if alone:
            SPEAKING.release()


def first_run(held: Held, spoken: set, signature: tuple, run: Callable[[], Any]) -> Any:
    """`run()`, a runner's run of `held`'s session: at an input shape the runner has not run yet (`spoken`), what
    the session's first run at it said is said again, or heard and kept where it never ran it."""
    if signature in spoken:
        return run()
    spoken.add(signature)
    said = held.runs.get(signature)
    if said is not None:
        _say_again(said)
        return run()
    with speaking(fd2_only=True) as heard:  # a run says nothing in Python
        out = run()
    if heard is None or not heard.heard_fd2:
        held.spoiled = True
    else:
        held.runs[signature] = heard.to_json()
    return out


def _say_again(said: dict) -> None:
    """`export.said.say_again`, never while another thread is inside a `Said`: that block would take the lines (on
    fd 2) and warnings as its own session's, pass them on once and keep them, and the next command say them twice (on
    an H200, a served bisect's reference made while its candidates were taken: one line more than its own process
    said, from the second served command on). Said anyway where none is free within `_WAIT_S`."""
    from cp_debug.export.said import say_again

    with _alone():
        say_again(said)


def key_of(parts: tuple, sources: tuple) -> str | None:
    """The key of a runner made from `sources` (models: a ModelProto, a file, None) and `parts` (everything else,
    by `repr`); None where a source cannot be told by its content (a graph over one protobuf message, weights in
    the weights folder)."""
    h = hashlib.sha1(repr(parts).encode())
    for src in sources:
        if src is None:
            h.update(b"-")
            continue
        found = _source(src)
        if found is None:
            return None
        h.update(found)
    return h.hexdigest()


def feeds_digest(feeds) -> str:
    """Calibration feeds (a list of name -> array), by content."""
    import numpy as np

    if not feeds:
        return ""
    h = hashlib.sha1()
    for feed in feeds:
        for name in sorted(feed):
            a = np.ascontiguousarray(feed[name])
            h.update(f"{name}{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def signature(feed: dict) -> tuple:
    """An input feed's names, shapes and types: a session's first run at each says what it says once."""
    return tuple(sorted((k, tuple(v.shape), str(v.dtype)) for k, v in feed.items()))


def _source(src) -> bytes | None:
    if isinstance(src, (str, os.PathLike)):  # a file: its size and time, and those of the files beside it (its data)
        path = Path(src).resolve()
        try:
            stamps = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns)
                            for e in os.scandir(path.parent) if e.is_file())
        except OSError:
            return None
        return repr((str(path), stamps)).encode()
    from cp_debug.graph.onnx_files import encoded

    data = encoded(src)
    return None if data is None else hashlib.sha1(data).digest()


def _room() -> bool:
    """Whether `_FREE_SHARE` of the host's memory is free (/proc/meminfo); True where it cannot be told."""
    free, total = meminfo("MemAvailable"), meminfo("MemTotal")
    return free is None or total is None or free >= _FREE_SHARE * total


def shrinker(held: Held):
    """What gives a kept CUDA runner's arenas back to the card once the server idles (`ort_kept.shrink_kept`): each
    of its sessions that ran, once more on zeros of an input shape it ran (`ort_session.shrink_arena`)."""
    def shrink() -> None:
        from cp_debug.backends.ort.ort_session import shrink_arena

        deployed = held.state.get("_deployed")
        sessions = {"run": held.state.get("_sess"), "bound": held.state.get("_sess"),
                    "deployed": deployed[0] if deployed else None}
        done: set[int] = set()
        for where, *signature in list(held.runs):
            sess = sessions.get(where)
            if sess is not None and id(sess) not in done:
                shrink_arena(sess, tuple(signature))
                done.add(id(sess))
    return shrink

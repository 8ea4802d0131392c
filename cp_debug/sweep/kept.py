"""What a sweep may leave for the next one in a resident process (`cpdebug serve`; issue 87, item 3): the Ray
cluster it started, its actors with their sessions open on the export, the metrics' process pool.

A `--ray local` sweep of its own process pays, before its first frame, Ray's start (3.3-4 s on a GPU host) and each
actor's process, imports, model and sessions (4-6 s), and after its frames the metrics' pool's imports: 14-20 s of a
1000-frame sweep whichever number of cards it runs on, which is what held its speed-up on four cards to 2.3×. In the
server, which runs one command at a time, they outlive the command instead, each under a key of everything it was
made from — the cluster under the environment and folder its processes inherited, the actors under the sweep's
settings, their placement and the export's bytes (`workers_key`, `stages_digest`) — and the next sweep takes them
only where its own key is the same (`take`): anything else lets them go and makes its own. A thing left with a
failed command is let go at once, never kept.

Outside the server (outside `keep_between`) nothing is kept: `put` lets a thing go on the spot. The server lets
all go when it ends (`release_all`), the actors before the cluster they run on.
"""

from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_KEEP = False
_held: dict[str, tuple[Any, Any, Callable[[Any], None]]] = {}  # kind -> (key, thing, how to let it go), in order made
_lock = threading.Lock()

# environment variables a Ray cluster's processes read as they start (its workers inherit the environment of the
# command that started it): a cluster started under other values of these is not kept for a command
_ENV_PREFIXES = ("CPDEBUG_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_", "NUMBA_", "ORT_", "RAY_", "TORCH",
                 "PYTORCH_", "LD_", "PYTHON", "TRITON_")


@contextmanager
def keep_between(say: Callable[[str], None] = lambda text: None) -> Iterator[None]:
    """While in it, what a sweep puts is kept for the next sweep of this process (the server's life); all let go
    at its end, said through `say`."""
    global _KEEP
    _KEEP = True
    try:
        yield
    finally:
        _KEEP = False
        if held():
            say(f"letting go of what sweeps kept: {', '.join(held())}")
        release_all()


def keeping() -> bool:
    return _KEEP


def take(kind: str, key) -> Any | None:
    """The thing of `kind` kept under `key`, handed over (it is no longer held); None where none is. One of `kind`
    under another key is let go first, with everything kept after it (what stands on it)."""
    with _lock:
        got = _held.get(kind)
        if got is None:
            return None
        if got[0] == key:
            del _held[kind]
            return got[1]
    _release_from(kind)
    return None


def put(kind: str, key, thing, release: Callable[[Any], None]) -> None:
    """`thing` kept under `key` for the next sweep (another of its kind let go first); let go at once where nothing
    is kept between commands."""
    if not _KEEP:
        release(thing)
        return
    with _lock:
        old = _held.pop(kind, None)
    if old is not None:
        old[2](old[1])
    with _lock:
        _held[kind] = (key, thing, release)


def holds(kind: str, key) -> bool:
    """Whether a thing of `kind` is kept under `key`."""
    with _lock:
        return kind in _held and _held[kind][0] == key


def held() -> list[str]:
    """The kinds kept now, in the order they were made."""
    with _lock:
        return list(_held)


_WORDS = {"ray": "the Ray cluster a `--ray local` sweep started", "metrics-pool": "the metrics' process pool"}


def described() -> list[str]:
    """What is kept now, in words (`cpdebug serve --status`)."""
    with _lock:
        held = list(_held.items())
    return [f"{len(thing.actors)} Ray sweep worker(s), their sessions open" if kind == "ray-workers"
            else _WORDS.get(kind, kind) for kind, (_, thing, _) in held]


def release_all() -> None:
    """Everything kept let go, the last made first (actors before their cluster)."""
    with _lock:
        kinds = list(_held)
    if kinds:
        _release_from(kinds[0])


def _release_from(kind: str) -> None:
    """`kind` and everything kept after it let go, the last made first."""
    with _lock:
        kinds = list(_held)
        gone = [(k, _held.pop(k)) for k in kinds[kinds.index(kind):]] if kind in _held else []
    for _, (_, thing, release) in reversed(gone):
        try:
            release(thing)
        except Exception:  # noqa: BLE001 - one thing that will not go does not keep the others
            pass


def ray_key(address: str, env: dict, cwd: str) -> tuple:
    """What a Ray cluster this process starts is made of: the address asked for, the folder and the environment its
    processes inherit (`_ENV_PREFIXES` of `env`, less what Ray set in this process: `ray_set`)."""
    return address, cwd, tuple(sorted((k, v) for k, v in env.items() if k.startswith(_ENV_PREFIXES)
                                      and k not in _RAY_SET))


_RAY_SET: set[str] = set()  # environment variables Ray's import or `ray.init` set or changed in this process


def ray_set(before: dict) -> None:
    """Ray imported or started in this process, `before` the environment as it was: what it set is left out of the
    keys (the server puts each command's own environment back; a process that runs several sweeps keeps it)."""
    _RAY_SET.update(k for k, v in os.environ.items() if before.get(k) != v)


def stages_digest(stages: dict[str, bytes]) -> str:
    """The export's bytes (the plug-in's `stage_bytes`), as one digest."""
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(stages):
        h.update(name.encode())
        h.update(len(stages[name]).to_bytes(8, "little"))
        h.update(stages[name])
    return h.hexdigest()


def file_stamp(path) -> tuple | None:
    """A user's file or folder as a kept thing's key holds it: its size and modification time (of each file under a
    folder: `files.tree_stamp`); () where nothing is there, None where no path is given."""
    from pathlib import Path

    from cp_debug.files import tree_stamp

    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        return tree_stamp(p)
    try:
        st = p.stat()
    except OSError:
        return ()
    return ((str(p), st.st_size, st.st_mtime_ns),)


class RayWorkers:
    """A sweep's Ray actors, kept with their sessions open (`RayExecutor.close` in the server): their handles, the
    export's ObjectRef they opened on and its digest, the shipping of their files, each one's `open` call and
    the answers come back (actor -> answer: a short sweep may end before an actor is up; the next one waits for it
    as for a new one). Not their paces: the last chunks of a sweep run with the card to themselves, and a plan
    seeded with those gave one actor a third of the next sweep's frames (its card busy alone for 19 s of 40)."""

    def __init__(self, actors: list, stages: list, digest: str | None, shipping, opening: list, opened: dict):
        self.actors, self.stages, self.digest, self.shipping = actors, stages, digest, shipping
        self.opening, self.opened = opening, opened


def workers_key(settings, cluster: dict, n: int, cpus: int, passive: bool, share: float, sync) -> tuple:
    """What a sweep's actors are made of besides the export: the sweep's settings (the model, backends, level…, and
    `overlap`, which the manifest leaves out: it changes how the lanes run, not a value),
    the user's checkpoint and INT8 files as they are on disk now, the cluster's resources and the actors' placement
    (`placement.actors_for`, `gpu_share`), CUDA's sync mode."""
    import json

    return (json.dumps(settings.to_json(), sort_keys=True, default=str), getattr(settings, "overlap", None),
            file_stamp(settings.checkpoint),
            file_stamp(settings.int8_dir), tuple(sorted(cluster.items())), n, cpus, passive, share, sync)


def let_go_workers(workers: RayWorkers) -> None:
    """Kept actors killed (their cards freed at once) and every Ray reference to them dropped here, before any
    shutdown of their cluster (one freed after it ends the process: `RayExecutor.close`)."""
    import ray

    for a in workers.actors:
        try:
            ray.kill(a)
        except Exception:  # noqa: BLE001 - gone already
            pass
    if workers.shipping is not None:
        workers.shipping.close()
    workers.actors, workers.stages, workers.shipping, workers.opening = [], [], None, []


def shut_down_ray(_: object) -> None:
    """A kept cluster shut down (its processes stopped and waited for), what only a reference cycle held collected
    first."""
    import gc

    import ray

    gc.collect()
    ray.shutdown()

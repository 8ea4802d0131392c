"""What a Ray sweep ships to its actors on other hosts than the driver's (issue 87, item 3): the files the user named
on the driver's machine — the `--checkpoint` and every frame read from a file (`--scenes` point files, bag messages,
a kit's frames) — are read there once and handed over through Ray's object store, so a cluster of several hosts runs
the same command without the files copied to each node's disk first. The export travels already
(`RayExecutor.ship`).

On a cluster of one host (and so in every in-machine sweep) nothing is shipped: the actors read the files as the
in-process sweep does. On several hosts, the checkpoint is put into the store once and an actor on another host writes
it to its own cache folder (`files.cache_dir("shipped")`, named by its digest, bounded as every cache folder; a
temporary folder where the cache is off) before its model is built; an actor's frames are read by the driver
(`Frame.in_memory`) until the actor's `open` has told its host, and from then on only where that host is not the
driver's. Through Ray Client (`ray://`) the driver's machine is no node of the cluster: everything is shipped.

Left on each node's disk: `--int8` folders and deployed folders (`SPEC@DIR`): their paths are part of the lane's
name and settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cp_debug.data.frames import Frame
from cp_debug.sweep.records import SweepSettings

READERS = 4  # a chunk's frames read side by side on the driver for an actor on another host


@dataclass(frozen=True, eq=False)
class Unread:
    """A frame the driver could not read for an actor on another host: reading it there raises what the driver's
    read raised, so the frame fails with the reason an in-process sweep gives."""

    error: BaseException

    def load(self, cfg) -> Any:
        raise self.error

    def truth(self, cfg) -> None:
        return None


@dataclass(frozen=True)
class Shipment:
    """What every actor is made with: the driver's Ray node (None through Ray Client: no actor shares its disk) and
    the checkpoint's (file name, bytes) in Ray's object store, in a list so the actor fetches it only where it
    needs it (`settings_here`)."""

    driver_node: str | None = None
    checkpoint: list = field(default_factory=list)

    def settings_here(self, settings: SweepSettings, node: str) -> SweepSettings:
        """`settings` as an actor on Ray node `node` builds its model from: on the driver's node as they are; on
        another, the checkpoint (where one was shipped) read from this node's copy."""
        if not self.checkpoint or node == self.driver_node:
            return settings
        import ray

        name, data = ray.get(self.checkpoint[0])
        return replace(settings, checkpoint=str(_local_copy(name, data)))


def _local_copy(name: str, data: bytes) -> Path:
    """`data` as a file named `name` on this host: in the cache folder under its digest (written once, whole), else
    in a temporary folder."""
    import contextlib
    import hashlib
    import tempfile

    from cp_debug.errors import BadInputError
    from cp_debug.files import cache_dir, prune_after_write, write_bytes_atomic

    digest = hashlib.sha256(data).hexdigest()[:32]
    folder = cache_dir("shipped")
    if folder is not None:
        path = folder / f"{digest}-{name}"
        if path.is_file() and path.stat().st_size == len(data):
            with contextlib.suppress(OSError):  # recently used: kept longest by the pruning
                path.touch()
            return path
        try:
            write_bytes_atomic(path, data, parents=True)
            prune_after_write(folder, len(data))
            return path
        except BadInputError:  # a cache folder this host cannot write: a temporary one
            pass
    return write_bytes_atomic(Path(tempfile.mkdtemp(prefix="cpdebug-shipped-")) / name, data)


def _picklable(err: Exception) -> Exception:
    """`err`, or where it does not survive pickling (Ray's way to the actor) a BadInputError of its message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any failure to round-trip
        from cp_debug.errors import BadInputError

        return BadInputError(str(err))


class Shipping:
    """The driver's side: whether the cluster spans hosts, the checkpoint put once, and each chunk's frames as an
    actor gets them (`frames`), read here for an actor whose host is not known to be the driver's."""

    def __init__(self, ray, settings: SweepSettings, client: bool):
        alive = [n for n in ray.nodes() if n.get("Alive")]
        self.driver_node = None if client else ray.get_runtime_context().get_node_id()
        self.needed = client or len(alive) > 1
        self.settings = settings
        self._local: set[int] = set()  # actors known to run on the driver's host
        self._placed: set[int] = set()  # actors whose host is known
        self.frames_shipped = 0
        checkpoint = []
        if self.needed and settings.checkpoint and Path(settings.checkpoint).is_file():
            path = Path(settings.checkpoint)
            checkpoint = [ray.put((path.name, path.read_bytes()))]
        self.shipment = Shipment(self.driver_node, checkpoint)
        self._cfg = None
        self._pool = None  # the threads reading a chunk's files (a file's read releases the GIL)

    def placed(self, actor: int, node: str | None) -> None:
        """Actor `actor` runs on Ray node `node` (its `open`'s answer; None: unknown, it failed)."""
        if node is None:
            return
        self._placed.add(actor)
        if node == self.driver_node:
            self._local.add(actor)

    def frames(self, actor: int, chunk: tuple) -> tuple:
        """`chunk` ((index, Frame), …) as actor `actor` is to get it: unchanged where it shares the driver's disk
        (or needs nothing of it); else each frame read from a file here (`Frame.in_memory`; `Unread` where that
        raised)."""
        if not self.needed or actor in self._local or all(frame.portable for _, frame in chunk):
            return chunk
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._cfg = self.settings.config()
            self._pool = ThreadPoolExecutor(READERS, thread_name_prefix="cpdebug-ship")
        out = tuple(self._pool.map(self._read, chunk))
        self.frames_shipped += sum(1 for (_, sent), (_, frame) in zip(out, chunk) if sent is not frame)
        return out

    def _read(self, item: tuple) -> tuple:
        """(index, the frame in memory), the frame as it is where it needs no file, or `Unread` where reading it
        raised."""
        index, frame = item
        if frame.portable:
            return item
        try:
            return index, frame.in_memory(self._cfg)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as err:  # noqa: BLE001 - the frame's own failure, said by the actor's frame loop
            return index, Frame(frame.token, Unread(_picklable(err)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def describe(self) -> dict:
        """What was shipped, for the executor's record."""
        return {"hosts_beside_driver": self.needed, "checkpoint": bool(self.shipment.checkpoint),
                "frames": self.frames_shipped,
                "actors_on_other_hosts": len(self._placed - self._local)}

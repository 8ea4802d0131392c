"""Shard files: a sweep's results on disk, each file written whole or not at all, and the resume that trusts them.

`DIR/shards/shard-00003.json` holds the `FrameResult`s of one shard (consecutive frames). While a shard runs
in process, `shard-00003.partial.json` is rewritten (whole) after every frame, so a killed sweep loses at most
the frame in flight. `DIR/manifest.json` records the settings and frame tokens: `--resume` continues only a
sweep of the same settings and frames, skipping finished shards and the finished frames of a partial one.
`locked(DIR)` holds `DIR/.lock` (fcntl.flock) for a sweep's life, so that a second sweep on the same folder is
refused instead of interleaving its shards with the first's.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cp_debug.errors import BadInputError
from cp_debug.data.frames import Frame
from cp_debug.files import json_text, os_reason, write_text_atomic
from cp_debug.sweep.records import FrameResult

MANIFEST_SCHEMA = "cp_debug.sweep-manifest/1"
SHARD_SCHEMA = "cp_debug.sweep-shard/1"


@dataclass(frozen=True)
class ShardTask:
    """Shard `index`: its frames as (frame index, Frame), and the results a partial file already holds."""

    index: int
    frames: tuple[tuple[int, Frame], ...]
    done: tuple[FrameResult, ...] = ()

    @property
    def todo(self) -> tuple[tuple[int, Frame], ...]:
        have = {r.index for r in self.done}
        return tuple((i, f) for i, f in self.frames if i not in have)


def plan_shards(frames: list[Frame], size: int) -> list[ShardTask]:
    if size < 1:
        raise BadInputError(f"--shard-size {size}: a shard holds at least one frame")
    return [ShardTask(k // size, tuple((i, frames[i]) for i in range(k, min(k + size, len(frames)))))
            for k in range(0, len(frames), size)]


@contextlib.contextmanager
def locked(out: str | Path):
    """Hold `out/.lock` while the block runs (the folder is made if missing); another holder is one line, exit 2.
    The lock is the kernel's (released when this process ends, however it ends); after a finished sweep the file
    stays, naming the last holder's pid. A block that raises leaves no lock file (removed while still held: the
    shards written so far stay for --resume), and a folder made here that is left empty is removed again."""
    import fcntl

    out = Path(out)
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise BadInputError(f"cannot write in {out}: {os_reason(e)}; choose another --out") from None
    held = finished = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise BadInputError(f"{out} is in use by another sweep (pid {pid}): wait for it or choose another "
                                "--out") from None
        held = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
        finished = True
    finally:
        if held and (not finished or (made and [p.name for p in out.iterdir()] == [".lock"])):
            with contextlib.suppress(OSError):
                (out / ".lock").unlink()
        os.close(fd)
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()  # only where the folder made here is empty


def frame_text(result: FrameResult) -> str:
    """One frame's entry of a shard file: its strict JSON on one line (`json_text`'s). The boxes and ground truth,
    the bulk of it, are plain lists of numbers: dumped straight where they are finite, which is what json_text
    would write, without its walk over every number."""
    doc = result.to_json()
    bulk = {k: doc.pop(k) for k in ("boxes", "gt")}
    try:
        tail = json.dumps(bulk, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError):  # NaN or Inf somewhere, or a value only the strict writer knows
        tail = json_text(bulk, indent=None)
    return f"{json_text(doc, indent=None)[:-1]}, {tail[1:]}"


class ShardStore:
    """The shard files of one sweep under `out/shards`."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.dir = self.out / "shards"
        self._written: dict[Path, list[FrameResult]] = {}  # a shard file written here -> its frames, as read back

    def path(self, index: int, partial: bool = False) -> Path:
        return self.dir / f"shard-{index:05d}{'.partial' if partial else ''}.json"

    # -- the manifest ------------------------------------------------------------------------------------
    def start(self, settings: dict, tokens: list[str], shard_size: int, resume: bool) -> bool:
        """Write the manifest of a fresh sweep, or check that `resume` continues the same one; whether it was fresh."""
        want = {"schema": MANIFEST_SCHEMA, "settings": settings, "tokens": tokens, "shard_size": shard_size}
        manifest = self.out / "manifest.json"
        if manifest.is_file():
            if not resume:
                raise BadInputError(f"{self.out} already holds a sweep: add --resume to continue it, "
                                    "or give another --out")
            try:
                have = json.loads(manifest.read_text())
            except (OSError, ValueError) as err:
                raise BadInputError(f"{manifest} cannot be read ({err}); start the sweep in another --out") from None
            for key in ("settings", "tokens", "shard_size"):
                if json.loads(json_text(have.get(key))) != json.loads(json_text(want[key])):
                    raise BadInputError(f"--resume: {self.out} holds a sweep with other {key.replace('_', ' ')}; "
                                        "give the same options, or start in another --out")
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(manifest, json_text(want, indent=None))
        return True

    def undo_start(self) -> None:
        """A fresh sweep that ended before any shard or partial file was written (refused after its start, its model
        raising as it was built, Ctrl-C): its manifest and empty shards folder removed, so that nothing is left
        half-written and the same command runs again without --resume (there was nothing to resume)."""
        if self.dir.is_dir() and any(self.dir.iterdir()):
            return
        with contextlib.suppress(OSError):
            (self.out / "manifest.json").unlink()
            self.dir.rmdir()

    # -- shards ------------------------------------------------------------------------------------------
    def pending(self, tasks: list[ShardTask]) -> list[ShardTask]:
        """The tasks whose shard file is not written yet, each with what its partial file holds."""
        out = []
        for t in tasks:
            if self.path(t.index).is_file():
                continue
            done = self._read(self.path(t.index, partial=True)) if self.path(t.index, partial=True).is_file() else []
            wanted = {i for i, _ in t.frames}
            out.append(ShardTask(t.index, t.frames, tuple(r for r in done if r.index in wanted)))
        return out

    def write(self, index: int, results: list[FrameResult], partial: bool = False,
              rendered: dict[int, str] | None = None) -> None:
        """Shard `index`'s file (or its partial file) holding `results`; `rendered`: frame index -> that frame's
        `frame_text`, kept by a caller that rewrites the partial file after every frame (each frame is rendered
        once, not once per later frame of its shard)."""
        rendered = rendered or {}
        frames = ", ".join(rendered[r.index] if r.index in rendered else frame_text(r) for r in results)
        text = f'{{"schema": {json.dumps(SHARD_SCHEMA)}, "shard": {int(index)}, "frames": [{frames}]}}'
        write_text_atomic(self.path(index, partial), text, parents=True)
        if not partial:
            self.path(index, partial=True).unlink(missing_ok=True)
            # what `results` would read back from the file, read now (the caller writes on a helper thread while
            # the frames run): 2.6 s of a 1000-frame awml-base sweep's tail on an H200 host went to reading them
            self._written[self.path(index)] = _frames_of(json.loads(text))

    def results(self) -> list[FrameResult]:
        """Every finished shard's frames, in frame order (those this store wrote as it wrote them, the others read)."""
        out: list[FrameResult] = []
        for f in sorted(self.dir.glob("shard-?????.json")):
            out.extend(self._written[f] if f in self._written else self._read(f))
        return sorted(out, key=lambda r: r.index)

    @staticmethod
    def _read(path: Path) -> list[FrameResult]:
        try:
            return _frames_of(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise BadInputError(f"shard {path} cannot be read ({type(err).__name__}: {err}); "
                                "delete it and --resume") from None


def _frames_of(doc: dict) -> list[FrameResult]:
    """A shard file's frames."""
    return [FrameResult.from_json(d) for d in doc["frames"]]

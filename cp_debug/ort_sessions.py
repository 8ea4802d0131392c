"""The one door to an ONNX Runtime session (issue 118, item 1): every `onnxruntime.InferenceSession` cp_debug makes is
made by `open_session`, with options from `session_options` (the graph optimisation level, threads and their
spinning, the host arena, config entries, where a model's stored weights are). `tests/test_house_rules.py` holds every
other module to it.

It stands on the lowest floor that every caller may import, below `half` (the Cast sessions of float16 conversions)
and `graph` (a graph helper's run, external weights: `graph/session.py` says which folder holds a model's weights),
so a caller on any floor asks it; what a backend adds (determinism's settings, INT8's exact integer products, the
facts of the optimised graph, the sessions a served process keeps) stays in `backends/ort/` and `determinism`, which
build on it. A user's repro script (`bugreport/_repro_template.py`) is written for cp_debug's absence and makes its own.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

WEIGHTS_FOLDER = "session.model_external_initializers_file_folder_path"  # where relative external data is read
_LOADED: dict[str, tuple[int, int]] = {}  # a file's real path → (size, mtime) when a CPU session of its path loaded
_HELD: dict[str, tuple[tuple, tuple[int, int], Any]] = {}  # real path → (options' key, stamp, session): `hold`
_FIRST: dict[str, tuple | None] = {}  # real path → (feed, outputs) of the held session's first run: `hold`


def session_options(*, level: str | None = None, threads: int | None = None, inter_threads: int | None = None,
                    spinning: bool = True, arena: bool = True, quiet: bool = False,
                    config: Mapping[str, Any] | None = None, weights_folder: str | None = None):
    """An `onnxruntime.SessionOptions`: `level` a `GraphOptimizationLevel` name (ORT_DISABLE_ALL, …; None: ORT's
    default, all), `threads` / `inter_threads` the intra- and inter-op thread counts (None: ORT's), `spinning` False:
    idle threads sleep, `arena` False: outputs are plain allocations, `quiet`: errors only in ORT's log, `config`
    session config entries, `weights_folder`: the folder a model's relative external data is read from."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if level is not None:
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if threads is not None:
        so.intra_op_num_threads = int(threads)
    if inter_threads is not None:
        so.inter_op_num_threads = int(inter_threads)
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not arena:
        so.enable_cpu_mem_arena = False
    if quiet:
        so.log_severity_level = 3
    for key, value in (config or {}).items():
        so.add_session_config_entry(str(key), str(value))
    if weights_folder is not None:
        point_at(so, weights_folder)
    return so


def point_at(so, folder: str) -> None:
    """Session options `so` read a model's relative external data from `folder` (a session made from bytes)."""
    so.add_session_config_entry(WEIGHTS_FOLDER, str(folder))


def open_session(src: bytes | str, so=None, providers: Sequence = ("CPUExecutionProvider",), **kwargs):
    """An `onnxruntime.InferenceSession` of `src` (a model's bytes or a file's path) with options `so` (None:
    `session_options()`), `providers` (names, or (name, options) pairs) and InferenceSession's other keyword
    arguments (`provider_options`, `disabled_optimizers`). Raises what ONNX Runtime raises: the caller tells the
    user's model from the machine (`backends/ort/ort_session.ort_errors`)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(src, sess_options=so if so is not None else session_options(),
                                providers=list(providers), **kwargs)
    if isinstance(src, (str, os.PathLike)) and all(_name(p) == "CPUExecutionProvider" for p in providers):
        _LOADED[os.path.realpath(src)] = _stamp(src)
    return sess


def loaded_as_written(path: str | os.PathLike) -> bool:
    """Did this process already make a CPU session from the file at `path` itself (its path: the bytes on disk,
    external data beside them, nothing re-encoded), the file unchanged since? Then ONNX Runtime loads it as written,
    and a load check (`backends/ort/ort_load.py`) need not make a second session of it (issue 116 item 5: the
    `--generate` decodes load both files first)."""
    try:
        return _LOADED.get(os.path.realpath(path)) == _stamp(path)
    except OSError:
        return False


def hold(path: str | os.PathLike, sess, key: tuple, first: tuple | None = None) -> None:
    """Keep `sess`, a CPU session made from the file at `path` itself with options `key` (what of them can change its
    numbers: `Determinism.numbers_key`), for one later `take` (issue 116 item 5: the `--generate` candidate's decode
    session runs that file's graph as deployed, so no other session of it is made for that); `let_go` drops it.
    `first`: (feed, every output by name) of a run it made, handed with it (`first_of`)."""
    _HELD[os.path.realpath(path)] = (tuple(key), _stamp(path), sess)
    _FIRST[os.path.realpath(path)] = first


def take(path: str | os.PathLike, key: tuple):
    """The session `hold` kept for the file at `path`, where it was made with options `key` and the file is unchanged
    since; None otherwise. Taken once: not kept here after this, whatever the answer."""
    try:
        made_with, stamp, sess = _HELD.pop(os.path.realpath(path))
    except KeyError:
        return None
    try:
        return sess if made_with == tuple(key) and stamp == _stamp(path) else None
    except OSError:
        return None


def first_of(path: str | os.PathLike) -> tuple | None:
    """The (feed, outputs by name) `hold` kept beside the session of the file at `path`, else None; taken once."""
    return _FIRST.pop(os.path.realpath(path), None)


def let_go() -> None:
    """Drop every session `hold` kept (a run's end)."""
    _HELD.clear()
    _FIRST.clear()


def _stamp(path: str | os.PathLike) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _name(provider) -> str:
    return provider if isinstance(provider, str) else provider[0]

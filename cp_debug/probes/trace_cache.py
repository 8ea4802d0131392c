"""The module trace kept on disk between processes, found again by what made it.

`trace_module` runs the model once with hooks on every submodule only to name the probes: a seconds-long forward
pass for awml-base on CPU in every run, though the same model is bisected again and again (27 CPU-s of the test
suite, py-spy). `traced` keys a trace as the export cache keys an export (`export.cache.export_key`: the module's
structure, the plain attributes of every submodule — `training`, a `cpdebug_trace_skip` set on an instance —, the
source files of their classes — a class's `cpdebug_trace_skip`, its forward —, every parameter and buffer, the
example inputs' bytes, the versions of cp_debug, torch and onnx) with the trace's own code (torch_trace.py,
sites.py, this file), the prefix and which modules the trace skips, and keeps it as `KEY.json` in the cache's
`traces` folder (`files.cache_dir`), written whole (`graph/stored.py`) and bounded by `files.prune_cache`. What the
forward said (Python warnings, log records, fd 2) is kept with it and said again on a hit (`export/said.py`), so a
run's third-party warnings are the same either way. Off with `CPDEBUG_NO_CACHE=1` (`--no-cache`); a folder that
cannot be written is skipped.

A hit skips a forward pass (run under no_grad, in whatever mode the module is), so it is given only where that pass
changes nothing the run reads later:
- a module with a submodule in training mode is traced every time: there the pass is a step (BatchNorm's running
  statistics move, dropout draws random numbers);
- so is one with forward hooks not the trace's own (a user's recorder, torch's global hooks): a hit would skip them;
- so are example inputs that are not all tensors (their bytes are no key);
- a trace is stored only where the pass left the module and its inputs as it found them — the same key after it
  (parameters, buffers, plain attributes: an observer's min/max, an amax set on first call, an input changed in
  place) — and torch's, numpy's and Python's random number generators where they were.
State no key sees, kept in a plain Python object, stays out by the callers: a calibrator attached to a quantizer
collects into one, and `quant/calibrate.py` attaches it only inside its own calibration loop, never around a trace.

A pass that fails is kept too where the caller asks (`remember_failure`: `sized_shapes.py`, which tries input sizes
the net cannot take, smallest first, and moves on at the first that fails): its exception's type and message, under
the same key and the same conditions, and raised again as `TraceFailed` on a hit. Each such try was a forward pass
at a shape the process had not run (oneDNN's first call at a shape: 0.6-0.9 s a try for the tiny preset on the CPU
machine) in every run. A memory error is never kept (the next run may have the memory).
"""

from __future__ import annotations

import weakref

from cp_debug.files import cache_dir
from cp_debug.probes.torch_trace import ModuleTrace, trace_module

SCHEMA = "cp_debug.trace_cache/4"  # 2: a shared module's calls by the name reached through; 3: handed_up; 4: dtypes


class HeldKey:
    """The part of a module's trace key before its inputs (`export.cache.key_start`: its structure, attributes,
    sources and every weight), hashed once for a caller that traces the same module at several inputs in a row
    (`sized_shapes.py`: a try a size, 4 for awml-base's backbone, each hashing its 18.5 MB again) and copied for
    each; `traced` drops it whenever it runs a pass, which may change the module."""

    def __init__(self):
        self.start = None
        self.of: tuple | None = None  # (a weak reference to the module, prefix, extra) it was made for

    def drop(self) -> None:
        self.start, self.of = None, None

    def start_for(self, module, prefix: str, extra: str, make):
        """The held part for `module` (and `prefix`, `extra`), made by `make()` where it holds none for them."""
        if self.of is None or self.of[0]() is not module or self.of[1:] != (prefix, extra):
            self.start, self.of = make(), (weakref.ref(module), prefix, extra)
        return self.start


class TraceFailed(RuntimeError):
    """A pass that failed in an earlier run, raised again from the cache (`traced(remember_failure=True)`): the
    message is the original exception's type and message."""


def traced(module, example_inputs: tuple, *, prefix: str = "", extra=None,
           remember_failure: bool = False, held: HeldKey | None = None) -> ModuleTrace:
    """`trace_module(module, example_inputs, prefix=prefix)` through the cache: the stored trace when one was made
    from the same module, weights, example inputs and prefix (equal to a fresh one), else a fresh trace, stored
    where that is safe (the module docstring). `extra`: what else the module's forward depends on that its classes'
    source files do not hold, as the export cache takes it (a `--torch` file's own code: `subjects.loaders.user_code`:
    a helper function in another of the user's files that the forward calls). `remember_failure`: a pass that
    raises is kept too, and raised again as `TraceFailed` on a hit (the module docstring). `held`: the key's
    part before the inputs kept across calls on the same module (`HeldKey`)."""
    import torch

    folder = cache_dir("traces")
    if folder is None or not _cacheable(module, example_inputs):
        if held is not None:
            held.drop()  # a pass runs here too
        return trace_module(module, example_inputs, prefix=prefix)
    from cp_debug.export.said import Said, say_again
    from cp_debug.graph.stored import load_json_entry, store_json_entry

    key = _key(module, example_inputs, prefix, extra, held)
    found = load_json_entry(folder, key, SCHEMA)
    if found is not None and ("trace" in found or remember_failure):
        say_again(found["said"])
        if "trace" not in found:
            raise TraceFailed(found["failed"])
        return ModuleTrace.from_json(found["trace"])
    if held is not None:
        held.drop()  # a pass runs: the module may not be the one hashed
    before = _rng_states(torch)
    try:
        with Said() as said:
            trace = trace_module(module, example_inputs, prefix=prefix)
    except Exception as err:
        if remember_failure and not _memory_error(err) and _rng_states(torch) == before \
                and _key(module, example_inputs, prefix, extra, fresh=True) == key:
            store_json_entry(folder, key, {"schema": SCHEMA, "said": said.to_json(),
                                           "failed": f"{type(err).__name__}: {err}"})
        raise
    if _rng_states(torch) != before or _key(module, example_inputs, prefix, extra, fresh=True) != key:
        return trace  # the pass changed state the run may read later: the next run must run it too
    try:
        data = trace.to_json()
    except ValueError:  # a dict output keyed by something JSON cannot give back as it was
        return trace
    store_json_entry(folder, key, {"schema": SCHEMA, "said": said.to_json(), "trace": data})
    return trace


def _memory_error(err: BaseException) -> bool:
    """Out of host or device memory: a failure of this machine at this moment, not of the module at this size."""
    return isinstance(err, MemoryError) or type(err).__name__ in ("OutOfMemoryError", "OutOfMemoryError_")


# modules with more weights are traced without the cache: its key hashes every weight, twice (before and after the
# pass), 4.7 s of a 2.24 GB model's CPU bisect, where its trace costs one forward (0.9 s there)
TRACE_KEY_FROM = 1 << 30


def _cacheable(module, example_inputs: tuple) -> bool:
    import torch
    from torch.nn.modules import module as torch_module

    from cp_debug.export.torch_export import weight_bytes

    if not all(isinstance(x, torch.Tensor) for x in example_inputs):
        return False
    if weight_bytes(module) >= TRACE_KEY_FROM:
        return False
    if getattr(torch_module, "_global_forward_hooks", None) or getattr(torch_module, "_global_forward_pre_hooks", None):
        return False
    return not any(m.training or m._forward_hooks or m._forward_pre_hooks for m in module.modules())


def _key(module, example_inputs: tuple, prefix: str, extra, held: HeldKey | None = None, fresh: bool = False) -> str:
    """The trace's key; `fresh`: every weight hashed again (after a pass: `export.cache.weights_digest`)."""
    import inspect

    from cp_debug import sites
    from cp_debug.export.cache import export_key, key_start
    from cp_debug.probes import torch_trace

    skipped = [n for n, m in module.named_modules() if getattr(m, "cpdebug_trace_skip", False)]
    code = (__file__, inspect.getsourcefile(torch_trace), inspect.getsourcefile(sites))
    settings = {"prefix": prefix, "skipped": skipped, "extra": repr(extra)}
    if held is None:
        return export_key(module, example_inputs, settings, schema=SCHEMA, code=code, fresh=fresh)
    start = held.start_for(module, prefix, repr(extra), lambda: key_start(module, settings, schema=SCHEMA, code=code))
    return export_key(module, example_inputs, settings, schema=SCHEMA, code=code, start=start)


def _rng_states(torch) -> tuple:
    """The global random number generators' states, as bytes and numbers that compare with ==."""
    import random

    import numpy as np

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    cuda = [s.numpy().tobytes() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_initialized() else []
    return (torch.get_rng_state().numpy().tobytes(), name, keys.tobytes(), pos, has_gauss, gauss, random.getstate(),
            cuda)

"""One ONNX Runtime session of a runner, made with the facts read from its optimised graph (compute dtypes, the
nodes the CUDA provider left to the CPU), and ONNX Runtime's errors told apart: the user's model, or the machine.

`OrtRunner` (`ort_runner.py`) holds the sessions this makes; `SessionSettings` is all it takes from the runner.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cp_debug.backends.ort.ort_precision import GraphFacts, cpu_fallback, graph_facts
from cp_debug.determinism import Determinism
from cp_debug.graph.onnx_files import INLINE_LIMIT
from cp_debug.errors import BackendUnavailableError, BadInputError

if TYPE_CHECKING:  # pragma: no cover
    from typing import Sequence

    import onnx

# x86 CPUs without VNNI (AVX2, AVX-512F) run ORT's U8S8 integer products through a 16-bit saturating instruction
# (VPMADDUBSW): some convs come out far off (0.65 against a 0.022 INT8 step on the tiny test net, AVX2 EPYC).
# ORT's U8U8 path is exact there and changes nothing on other CPUs: the integer sums are then exact on every x86 CPU.
# What still depends on the CPU is the float arithmetic around them (an unfused Q/DQ group, the float ops between,
# the FP32 reference itself): AVX2, AVX-512 and AMX kernels round differently in the last bits, and a value that
# lands within that of a half-step is quantized one step apart (issue 53, benchmarks/int8_isa_check.py: one element
# of 5120 on the tests' INT8 net, AMX against AVX2; the demo's report: the same verdicts, 70 against 71 boxes matched).
INT8_SESSION_CONFIG = {"session.x64quantprecision": "1"}
INT8_CPU_BOUND = ("one INT8 step (the quantizer's scale) at an element whose float value lies within the last bits' "
                  "rounding of a half-step: the float arithmetic around the exact integer sums differs by instruction "
                  "set (AVX2, AVX-512 VNNI, AMX)")

_DUMP_WEIGHTS = "session.optimized_model_external_initializers_file_name"

# ONNX Runtime's errors that say the model itself cannot be loaded (bad input). Others (RuntimeException: out of
# memory, a provider failing; EPFail; Python errors) are not the user's input and keep their traceback.
_BAD_MODEL = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoModel", "NoSuchFile")


@dataclass(frozen=True)
class SessionSettings:
    """What a runner's sessions are made with: `label` names the backend in messages; `int8` sets exact integer
    products; `shared_arena` takes host memory from the process's one arena; `dump_facts` writes ORT's optimised graph
    and reads its facts back (False: none); `prepack` False: the kernels do not copy the weights into their own
    layout (a session made only to read its optimised graph, which is made before)."""

    label: str
    determinism: Determinism
    threads: int | None = None
    spinning: bool = True
    shared_arena: bool = False
    int8: bool = False
    dump_facts: bool = True
    prepack: bool = True


def exact_int8(so) -> None:
    """Set `INT8_SESSION_CONFIG` on an `onnxruntime.SessionOptions` (every session that may run INT8 kernels)."""
    for key, value in INT8_SESSION_CONFIG.items():
        so.add_session_config_entry(key, value)


def make_session(model: "onnx.ModelProto", providers: list, record: bool, how: SessionSettings,
                 live_for: "Sequence[str] | None" = None):
    """An InferenceSession plus the facts read from ORT's optimised graph (dtypes of compute nodes, EP fallback;
    `record`: the node-to-provider assignment read too; `live_for`: the graph's own outputs, whose computing nodes
    are read into `facts.nodes`, the optimised graph dumped for them even where `how` asks for no facts)."""
    import onnx

    from cp_debug.graph.onnx_files import total_nbytes
    from cp_debug.graph.session import session_source
    from cp_debug.ort_sessions import open_session

    det = how.determinism
    # past 2 GiB: made from a path or from the weights folder, and its optimised graph not written again
    big = total_nbytes(model) >= INLINE_LIMIT
    dumps = not big and (how.dump_facts or live_for is not None)
    # a folder only for the optimised graph (awml-base's FP16 lockstep made and removed one for each of its 120
    # segment sessions, none used); a model past one message's size is written into one of `session_source`'s own
    with (tempfile.TemporaryDirectory(prefix="cpdebug_ort_") if dumps else contextlib.nullcontext()) as tmp, \
            session_source(model, tmp) as src:
        opt_path = Path(tmp) / "optimized.onnx" if dumps else None
        dump = str(opt_path) if dumps else None
        inexact = None

        def opened(int8: bool):
            try:
                so = det.ort_session_options(threads=how.threads, optimized_model_filepath=dump,
                                             record_assignment=record, spinning=how.spinning)
                if dump is not None:  # the facts read no weights: ORT writes them aside, not into the proto
                    so.add_session_config_entry(_DUMP_WEIGHTS, "weights.bin")  # parsed again (tiny: 25 ms)
                    _discarded(Path(tmp) / "weights.bin")
                _configure(so, model, replace(how, int8=int8))
                return open_session(src, so, providers, **det.ort_session_kwargs())
            except ort_errors():  # saving the optimised graph can fail (fused EP nodes): retry without
                if dump is None:
                    raise
                so = det.ort_session_options(threads=how.threads, record_assignment=record, spinning=how.spinning)
                _configure(so, model, replace(how, int8=int8))
                return open_session(src, so, providers, **det.ort_session_kwargs())

        from cp_debug.backends.ort.ort_crash import check  # native float16 on the CPU: a session ORT would die

        check(model, providers, det.ort_session_options().graph_optimization_level.name, how.label)  # making
        try:
            try:
                sess = opened(how.int8)
            except ort_errors(*_BAD_MODEL) as err:
                if not how.int8:
                    raise
                # ONNX Runtime's exact integer products cannot load it (their transformer adds an initializer
                # twice where a tf2onnx file shares one weight among several convs: basic-pitch's): the file's
                # own INT8 through ORT's default kernels, said in the precision line, not a refusal
                sess, inexact = opened(False), INEXACT_INT8.format(err=_reason(err))
        except ort_errors("NotImplemented") as err:
            raise BackendUnavailableError(
                f"{how.label}: ONNX Runtime has no kernel for a node of this model at this "
                f"precision: {first_line(err)}"
            ) from err
        except ort_errors(*_BAD_MODEL) as err:  # the model, not the machine: anything else propagates
            raise BadInputError(f"ONNX Runtime cannot load the model for {how.label}: {first_line(err)}") from err
        if dump is None or not opt_path.is_file():
            facts = GraphFacts(error="model too large to dump" if big else "ORT wrote no optimised model")
        else:
            try:
                from cp_debug.graph.switches import without_switches

                opt = without_switches(onnx.load(str(opt_path), load_external_data=False))  # the probed graph's facts
                facts = graph_facts(opt)
                if live_for is not None:
                    from cp_debug.backends.ort.ort_unprobed import live_nodes

                    facts = replace(facts, nodes=live_nodes(opt, live_for))
            except Exception as err:  # noqa: BLE001
                facts = GraphFacts(error=first_line(err))
        fallback = cpu_fallback(sess) if record else None
    return sess, replace(facts, cpu_fallback=None if fallback is None else tuple(fallback), note=inexact)


def _reason(err: BaseException) -> str:
    """ONNX Runtime's own words after its last `FAIL :` (its source location chain before them)."""
    said = [p.strip() for p in str(err).split("FAIL :") if p.strip()]
    return (said[-1] if said else first_line(err))[:160]


INEXACT_INT8 = ("ONNX Runtime cannot load this Q/DQ file with exact integer products (session.x64quantprecision: "
                "{err}): run with its default INT8 kernels, whose float arithmetic around the integer sums differs by "
                "instruction set")


def _discarded(path: Path) -> None:
    """The optimised graph's weights file at `path` made a link to the null device, where the system has one: the
    facts read no weights, and ORT writing them aside cost a session of a 0.5 B model's INT4 file (310 MB of them)
    0.3-0.6 CPU s of its 0.7-1.0 (issue 116 item 5); the graph it writes is the same. Elsewhere they are written."""
    import os

    if os.name == "posix" and os.path.exists(os.devnull):
        with contextlib.suppress(OSError):
            os.symlink(os.devnull, path)


def _configure(so, model: "onnx.ModelProto", how: SessionSettings) -> None:
    """Session settings beyond determinism's: where stored weights are; the shared host arena; for INT8, exact
    integer products."""
    from cp_debug.graph.session import point_at_weights

    point_at_weights(so, model)
    if how.shared_arena:
        _register_env_arena()
        so.add_session_config_entry("session.use_env_allocators", "1")
    if how.int8:
        exact_int8(so)
    if not how.prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")


_ENV_ARENA = False


def _register_env_arena() -> None:
    """One CPU arena in ONNX Runtime's environment, for sessions that ask for it (once per process)."""
    global _ENV_ARENA
    if _ENV_ARENA:
        return
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # ORT's defaults but for max_dead_bytes_per_chunk: a free chunk is split when more than 4 MiB of it would sit
    # unused (ORT's 128 MiB default kept large chunks whole for small tensors). On the CPU machine's awml-base
    # `--level all` FP16 bisect: peak RSS 2.55 GiB against 2.77 (default) and 1.88 with no arena at all, which
    # was 40% slower (the kernel zero-filling pages again for every segment)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, 1 << 22))
    _ENV_ARENA = True


def ort_errors(*names: str) -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception types of these names (its pybind module's), or all of them without names."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    found = [getattr(state, n, None) for n in names] if names else [getattr(state, n) for n in dir(state)]
    return tuple(t for t in found if isinstance(t, type) and issubclass(t, Exception))


def first_line(err: BaseException) -> str:
    text = [line for line in str(err).strip().splitlines() if line.strip()]
    return " ".join(text[:2])[:300] if text else type(err).__name__


def shrink_arena(sess, signature: tuple, arena: str = "gpu:0") -> None:
    """Give the card back what `sess`'s CUDA arena holds beyond its weights: one run on zeros of `signature` (its
    inputs' (name, shape, dtype) as `ort_kept.signature` records them), only its first output fetched, to the host,
    under ONNX Runtime's run option that frees `arena`'s unused regions as the run ends ("gpu:N", or "cpu:0";
    ONNX Runtime raises where the session has no such arena). Every other value of the run, and those of runs
    before it that nothing holds any more, then lie in free regions. For a session a server keeps between commands
    (`ort_kept.py`): the arena otherwise keeps the largest run it has served (the ORT pair's awml-base sessions at
    `--level all`: 50-65 GB of an H200)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", arena)
    feed = {name: np.zeros(shape, np.dtype(str(dtype).replace("torch.", ""))) for name, shape, dtype in signature}
    sess.run([sess.get_outputs()[0].name], feed, options)


def ort_version() -> str | None:
    """ONNX Runtime's version, None where it cannot be imported."""
    try:
        import onnxruntime as ort

        return ort.__version__
    except Exception:  # noqa: BLE001
        return None

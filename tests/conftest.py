"""Shared fixtures (the small conv net of tests/tiny_net.py exported once per session; the `tiny` CenterPoint preset),
the `needs` marker, the workers' share of the cores and the order files are handed out in.

torch, numpy and typer are imported where they are used, not at the top: pytest-xdist's controller loads this file
too, runs no test, and its ~3 CPU s of imports came before any worker started (measured: `import tests.conftest`
3.3 CPU s with torch at the top, 0.3 s without)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

# A cpdebug server the developer left running (`cpdebug serve`) would take the commands the tests start in processes
# of their own; tests/cli/test_serve.py starts its own servers on sockets of its own.
os.environ["CPDEBUG_SERVER"] = "off"


def _one_command_tree_per_app() -> None:
    """typer's CliRunner builds the click command tree from every command's signature on each `invoke` (0.15-0.2
    CPU s; 74 CPU-s over the suite, measured with py-spy); a `cpdebug` process builds it once, and so does a server
    for all the commands it runs (`serve_cmd.command_runner`). Here too: the tree of an app is built on its first
    invoke and used again (click makes a fresh context for every run; nothing of a run stays on the command)."""
    import typer.testing

    build = typer.testing._get_command
    built: dict[int, tuple] = {}

    def get_command(app):
        kept = built.get(id(app))
        if kept is None or kept[0] is not app:
            kept = built[id(app)] = (app, build(app))
        return kept[1]

    typer.testing._get_command = get_command


def _threads_per_worker() -> int | None:
    """Under xdist, each worker's share of the cores (2 cores, 2 workers: 1); None in a single pytest process."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 2:
        return None
    return max(1, len(os.sched_getaffinity(0)) // workers)


def _one_share_of_the_cores(threads: int) -> None:
    """Two workers each running torch and ONNX Runtime on every core fight over them (and ORT's idle pool threads
    spin): on the 2-core machine a tiny-preset bisect took 30 CPU s with one intra-op thread, 39 with the default
    two. torch's and ONNX Runtime's intra-op threads in this worker are its share (`intra_op_num_threads` where a
    session's options leave it at ORT's default, 0), and OMP_NUM_THREADS / MKL_NUM_THREADS tell the cpdebug
    processes a test starts the same; CPDEBUG_COMPARE_THREADS (`parallel.thread_count`: an in-process sweep's
    threads, the comparisons' split) too — a sweep took 42 CPU s on every core against 25 on one. Thread counts
    only: the same kernels run on the same data."""
    import onnxruntime as ort

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CPDEBUG_COMPARE_THREADS"):
        os.environ.setdefault(var, str(threads))
    import torch

    torch.set_num_threads(threads)
    plain = ort.InferenceSession.__init__

    def init(self, path_or_bytes, sess_options=None, *args, **kwargs):
        if sess_options is None:
            sess_options = ort.SessionOptions()
        if sess_options.intra_op_num_threads == 0:
            sess_options.intra_op_num_threads = threads
        plain(self, path_or_bytes, sess_options, *args, **kwargs)

    ort.InferenceSession.__init__ = init


@pytest.fixture(scope="session", autouse=True)
def _export_cache(tmp_path_factory):
    """The session's cp_debug cache (exports: `export/cache.py`; random weights) is a temporary folder, never ~/.cache.

    Under xdist the folder is the run's, shared by its workers (the parent of each worker's basetemp): a model one
    worker exported is read by the other. That is safe with both writing at once: an entry is written whole (temp
    file + rename, its JSON last) and keyed by the content of what made it, so two writers write the same bytes and
    a reader sees a whole entry or none (then exports itself)."""
    from cp_debug.export.cache import CACHE_ENV

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is .../pytest-N/popen-gwK: .../pytest-N is the run's
        base = base.parent
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(base / "export-cache"))
    yield
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _no_internal_error_left():
    """The suite leaves no internal-error report (`cli/_errors.internal_error_line`'s cpdebug-internal-*.txt) in the
    system's temporary folder: a test that expects exit 70 points `tempfile` at a folder of its own, and any other
    run that writes one met a bug of cp_debug — or a test that ended a run with an exception of its own, which the
    CLI maps as one (issue 108). Only reports made during this session by this checkout's code count (others' runs
    share the folder): their traceback names its files."""
    import tempfile
    import time

    folder, root, began = Path(tempfile.gettempdir()), str(Path(__file__).resolve().parents[1]) + os.sep, time.time()
    yield
    left = []
    for path in folder.glob("cpdebug-internal-*.txt"):
        try:
            if path.stat().st_mtime >= began - 1 and root in path.read_text(errors="replace"):
                left.append(f"{path}: {path.read_text(errors='replace').strip().splitlines()[-1]}")
        except OSError:
            continue
    assert not left, "the suite left internal-error reports (a bug of cp_debug met, or a test ending a run with " \
                     "an exception of its own):\n" + "\n".join(left)


@pytest.fixture(autouse=True)
def _threads_stay_the_workers_share():
    """A sweep run in process sets torch's thread count to its own (`SweepSettings.threads`) and leaves it: the
    next test gets the worker's share again."""
    yield
    threads = _threads_per_worker()
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """module, x (example input), path (ONNX), calib (feeds), input_names, output_names."""
    import numpy as np
    import torch

    from tests.tiny_net import INPUT_NAMES, OUTPUT_NAMES, TinyNet

    torch.manual_seed(0)
    module = TinyNet().eval()
    with torch.no_grad():  # non-trivial BN statistics, folded into the conv by the exporter
        module.bn.running_mean.uniform_(-0.2, 0.2)
        module.bn.running_var.uniform_(0.5, 1.5)
    rs = np.random.RandomState(0)
    x = rs.randn(1, 4, 16, 16).astype(np.float32)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(module, (torch.from_numpy(x),), str(path), input_names=INPUT_NAMES,
                      output_names=OUTPUT_NAMES, dynamo=False, opset_version=17)
    calib = [{"x": rs.randn(1, 4, 16, 16).astype(np.float32)} for _ in range(4)] + [{"x": x}]
    return SimpleNamespace(module=module, x=x, path=path, calib=calib, input_names=INPUT_NAMES,
                           output_names=OUTPUT_NAMES)


@pytest.fixture(scope="session")
def tiny_cfg():
    """The `tiny` CenterPoint preset, for the recipe, quant and ptq tests."""
    from cp_debug.models.centerpoint.presets import get_preset

    return get_preset("tiny")


def pytest_configure(config):
    """`--dist loadfile` hands out files in the order `pytest_collection_modifyitems` leaves them, not pytest-xdist's
    default (files with the most tests first, which put the few-test slow files last: a 13-minute run with one
    worker alone on them for the last minutes). numba's comparison kernels compiled once a run, by the controller
    (tests/kernels_once.py). In a process that runs tests (not xdist's controller): typer's command tree once per
    app, and a worker's share of the cores."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the run's first process: what its workers inherit
        config.stash[_RUN_FOLDER] = _one_temporary_folder_per_run()
        _compiled_once_per_run()
        _freed_memory_reused()
    from tests import kernels_once

    if getattr(config.option, "numprocesses", None) and not os.environ.get("PYTEST_XDIST_WORKER"):
        kernels_once.compile_in_the_controller()
        return  # xdist's controller: it runs no test
    kernels_once.wait_in_a_worker()
    _collections_scaled_to_the_heap()
    _last_collections_until_nothing_is_left()
    _one_command_tree_per_app()
    if _threads_per_worker():
        _one_share_of_the_cores(_threads_per_worker())


_RUN_FOLDER = pytest.StashKey[str]()
SYSTEM_TMP_ENV = "CPDEBUG_TESTS_SYSTEM_TMP"


def _one_temporary_folder_per_run() -> str:
    """Everything the run writes to the temporary directory goes into one folder of its own, removed at its end
    (`pytest_unconfigure`): pytest's `pytest-of-*` (the tmp_path folders, the export cache), the workers' and every
    `cpdebug` process's temporary files (`cpdebug_weights_*`, `cpdebug-store-*`, internal-error reports) and Ray's
    session folders (Ray takes TMPDIR on Linux) — left behind, a run left 6.1 GB in /tmp (issue 117). TMPDIR is set
    for the processes the run starts, `tempfile.tempdir` for this one, before pytest makes its base folder.
    A developer who wants a run's files kept gives `--basetemp DIR` (pytest's own folder, not removed here)."""
    import tempfile

    system = tempfile.gettempdir()
    folder = tempfile.mkdtemp(prefix="cpdebug-tests-", dir=system)
    os.environ.setdefault(SYSTEM_TMP_ENV, system)
    os.environ["TMPDIR"] = tempfile.tempdir = folder
    return folder


def pytest_unconfigure(config):
    """The run's temporary folder removed (its workers have ended; see `_one_temporary_folder_per_run`)."""
    folder = config.stash.get(_RUN_FOLDER, None)
    if folder:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _collections_scaled_to_the_heap() -> None:
    """A test process holds a large heap for its whole life (torch, ONNX, onnxscript, every collected test module),
    as a `cpdebug` process does: the collector's thresholds of one (`heap.collect_less`). With Python's default
    every full collection walked all of it again (0.2 s each here). Measured with gc.callbacks over tests/bisect in
    one process: 3.99 CPU s of collecting (2,760, 251 and 13 collections) against 1.55 s (169, 15 and 1), peak
    memory 2.48 against 2.54 GB; a worker's collection of the test files is shorter too."""
    from cp_debug.heap import collect_less

    collect_less()


def _last_collections_until_nothing_is_left() -> None:
    """At its end each test process runs pytest's last sweep for unraisable exceptions (`__del__` raising in a
    cycle): five full collections, each walking the whole heap (0.4-0.5 s each at 0.8 M objects, more at a worker's
    end; the suite's last ~10 s were the workers' collections). A collection that finds nothing unreachable ran no
    finalizer and freed nothing, so the next would find the same nothing: the collections stop there (at most
    pytest's count; measured: 11675, 6, then 0 objects). What is swept is the same. pytest's own function, private:
    left as it is if it is not there."""
    try:
        from _pytest import unraisableexception
    except ImportError:
        return
    if not callable(getattr(unraisableexception, "gc_collect_harder", None)):
        return

    def gc_collect_harder(iterations: int) -> None:
        import gc

        for _ in range(iterations):
            if not gc.collect():
                return

    unraisableexception.gc_collect_harder = gc_collect_harder


# glibc's malloc, for the processes the run starts (its workers, the cpdebug processes): blocks up to 32 MiB from
# the heap rather than fresh mappings, and up to 256 MiB freed at its top kept for the next allocation.
MALLOC_TUNABLES = ("glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456:"
                   "glibc.malloc.top_pad=16777216")


def _freed_memory_reused() -> None:
    """With glibc's default, a block over its adaptive threshold (128 KiB at first) is a fresh mapping and a freed
    heap top goes back to the kernel: the activations of every forward pass were faulted in, zeroed page by page,
    and unmapped again (`clear_page_rep`, `exc_page_fault` in perf). With MALLOC_TUNABLES the processes this run
    starts reuse what they freed. Measured over tests/fix and tests/sweep (-n 2, every process's CPU from
    /proc/stat): 210.7 → 206.6 CPU s; tests/bisect/test_candidate_isolation.py alone: page faults 786k → 580k,
    system time 3.3 → 2.3 s. Where GLIBC_TUNABLES is set already, it stays as it is; the allocator is not what
    any number is made of (torch and ONNX Runtime align their buffers themselves)."""
    os.environ.setdefault("GLIBC_TUNABLES", MALLOC_TUNABLES)


def _compiled_once_per_run() -> None:
    """Where the environment says PYTHONDONTWRITEBYTECODE (this machine's does), every process of the run compiled
    the cp_debug and test modules it imported from source again: the workers, and each of the ~100 `cpdebug`
    processes the tests start (9.3 CPU s of compiling in those, py-spy over the suite). For this run's processes
    Python writes the bytecode it makes, as it does by default, into the `__pycache__` folders beside the sources
    (ignored by git), and the next process reads it. (PYTHONPYCACHEPREFIX would keep them out of the checkout but
    moves every module's cache there, site-packages' too: each process of the run compiled torch again.)"""
    import sys

    if sys.flags.dont_write_bytecode and os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        sys.dont_write_bytecode = False


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    """Each worker collects every test file, and collecting one is mostly pytest rewriting its asserts (~8 CPU s of a
    worker's ~11 s collection on a fresh clone, py-spy). Both workers start at once and write the rewritten
    bytecode as they go (`_compiled_once_per_run`): the second worker first rewrites the files from the last one
    backwards until it meets one the first worker has written, so each rewrites about half and reads the rest. An
    optimisation only (pytest's own rewriting functions, private: left out if they are not there); what is
    collected and how it is rewritten do not change."""
    import sys

    if os.environ.get("PYTEST_XDIST_WORKER") != "gw1" or sys.dont_write_bytecode:
        return
    try:
        from _pytest.assertion import rewrite
    except ImportError:
        return
    needed = ("get_cache_dir", "PYC_TAIL", "_read_pyc", "_rewrite_test", "_write_pyc", "try_makedirs",
              "assertstate_key")
    if not all(hasattr(rewrite, name) for name in needed) or rewrite.assertstate_key not in session.config.stash:
        return
    state = session.config.stash[rewrite.assertstate_key]
    for fn in sorted(Path(__file__).parent.rglob("test_*.py"), reverse=True):
        folder = rewrite.get_cache_dir(fn)
        pyc = folder / (fn.name[:-3] + rewrite.PYC_TAIL)
        try:
            if pyc.is_file() and rewrite._read_pyc(fn, pyc) is not None:
                return  # the first worker got here: the rest are its
            stat, code = rewrite._rewrite_test(fn, session.config)
            if rewrite.try_makedirs(folder):
                rewrite._write_pyc(state, code, stat, pyc)
        except Exception:  # noqa: BLE001 - a file collection will report on its own (a syntax error, ...)
            continue


def _cuda() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "a CUDA device (torch.cuda.is_available() is False)"


def _ort_gpu() -> str | None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return None
    return "onnxruntime-gpu (this onnxruntime has no CUDAExecutionProvider: pip install 'cp-debug[gpu]')"


def _nuscenes() -> str | None:
    try:
        import nuscenes.eval.detection.algo  # noqa: F401 - what `cpdebug eval` / `fix` import
    except ImportError as err:
        return f"nuscenes-devkit (pip install --no-deps nuscenes-devkit==1.2.0: {err})"
    return None


def _trt_rtx() -> str | None:
    from cp_debug.backends.trt.trt_library import load_library
    from cp_debug.errors import BackendUnavailableError

    try:
        load_library("trt-rtx")
    except BackendUnavailableError as err:
        return f"TensorRT-RTX ({err})"
    return None


def _importable(module: str, package: str):
    """A check for an optional package, imported when a test needing it runs (not while collecting: nuscenes-devkit
    with scikit-learn took 3.3 CPU s of every worker's collection, whether it ran an eval test or not)."""
    def check() -> str | None:
        import importlib

        try:
            importlib.import_module(module)
        except ImportError as err:
            return f"{package} ({err})"
        return None

    return check


# `@pytest.mark.needs("cuda", "onnxruntime-gpu", ...)`: each name's check returns None when it is there, else what is
# missing; a test lacking any is skipped with every missing one named (a GPU machine without onnxruntime-gpu skips
# the ORT lanes, it does not fail them).
NEEDS = {"cuda": _cuda, "onnxruntime-gpu": _ort_gpu, "nuscenes-devkit": _nuscenes, "tensorrt-rtx": _trt_rtx,
         "onnxscript": _importable("onnxscript", "onnxscript: torch.onnx.export(dynamo=True)"),
         "omegaconf": _importable("omegaconf", "omegaconf: pip install 'cp-debug[awml]'"),
         "mmengine": _importable("mmengine", "mmengine"),
         "ray": _importable("ray", "ray: pip install 'cp-debug[ray]'")}


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("needs")
    if marker is None:
        return
    unknown = [n for n in marker.args if n not in NEEDS]
    if unknown:
        raise ValueError(f"unknown prerequisite(s) {unknown} in @pytest.mark.needs: one of {', '.join(NEEDS)}")
    missing = [why for why in (NEEDS[n]() for n in marker.args) if why]
    if missing:
        pytest.skip("needs " + "; ".join(missing))


def pytest_collection_modifyitems(config, items):
    """Under xdist, the files holding a `slow` test come first (each keeps its tests' order): the workers take files
    in this order (`--dist loadfile`), so the last ones handed out are short and neither worker idles long at the
    end waiting for the other.

    The modules that take the Ray lock (tests/sweep/ray_lock.py: one at a time on the machine) are kept apart: the
    first of them opens the run, the second comes after the slow files, the others halfway through the rest. Handed
    out side by side (they were adjacent among the slow files), one worker waited in the lock while the other ran
    its Ray module (a 15 s setup of tests/sweep/test_sweep_ray.py measured; with the second and third adjacent after
    the slow files, 28 s of tests/sweep/test_sweep_hosts.py's). Only the order changes: the lock still holds them
    apart."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    ray = list(dict.fromkeys(item.path for item in items if _takes_the_ray_lock(item)))
    rest = [p for p in dict.fromkeys(item.path for item in items) if p not in slow and p not in ray]
    first_half = set(rest[:len(rest) // 2])

    def place(item) -> int:
        if ray and item.path == ray[0]:
            return 0
        if item.path in ray:
            return 2 if item.path == ray[1] else 4
        if item.path in slow:
            return 1
        return 3 if item.path in first_half else 5

    items.sort(key=place)  # a stable sort: each group in collection order


def _takes_the_ray_lock(item) -> bool:
    from tests.sweep.ray_lock import one_ray_module

    return getattr(getattr(item, "module", None), "one_ray_module", None) is one_ray_module

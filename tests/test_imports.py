"""`cp_debug.imports.optional`: a library that is not installed is its hint (what needs it, the pip line of its extra);
one that is installed and fails to import is its own error in one line, never "not installed" (issue 87: Ray's
failed `import colorama` was said as "--ray needs Ray: pip install …"). The broken libraries here are real packages
on `sys.path` whose import fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cp_debug.errors import BackendUnavailableError, BadInputError, ExitCode
from cp_debug.imports import missing, optional

ROOT = Path(__file__).resolve().parents[1]


def _package(root: Path, name: str, body: str) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(body)


def test_a_library_not_installed_is_its_hint():
    with pytest.raises(BackendUnavailableError) as got:
        optional("cpdebug_no_such_library", "needs it: pip install 'cp-debug[it]'")
    assert str(got.value) == "needs it: pip install 'cp-debug[it]'" and got.value.exit_code == ExitCode.BACKEND
    with pytest.raises(BadInputError, match=r"^--x needs it$"):  # the caller's own error class
        optional("cpdebug_no_such_library.sub", "--x needs it", error=BadInputError)


def test_a_blocked_module_is_not_installed(monkeypatch):
    """`sys.modules[name] = None` (how the tests take a library away) is "not installed", for a package and for the
    module of it that is asked for."""
    monkeypatch.setitem(sys.modules, "cpdebug_blocked", None)
    with pytest.raises(BackendUnavailableError, match="^hint$"):
        optional("cpdebug_blocked", "hint")
    monkeypatch.setitem(sys.modules, "json.cpdebug_blocked", None)
    with pytest.raises(BackendUnavailableError, match="^hint$"):
        optional("json.cpdebug_blocked", "hint")


def test_an_installed_library_that_fails_to_import_says_its_own_error(tmp_path, monkeypatch):
    _package(tmp_path, "cpdebug_needs_more", "import cpdebug_not_here_either\n")
    _package(tmp_path, "cpdebug_raises", "raise RuntimeError('built for another ABI\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackendUnavailableError) as got:
        optional("cpdebug_needs_more", "pip install it", label="Needs-more")
    assert str(got.value) == ("Needs-more is installed but failed to import: ModuleNotFoundError: No module named "
                              "'cpdebug_not_here_either' (CPDEBUG_DEBUG=1 shows the traceback)")
    assert isinstance(got.value.__cause__, ModuleNotFoundError)  # CPDEBUG_DEBUG=1's traceback shows where
    with pytest.raises(BadInputError) as got:
        optional("cpdebug_raises", "pip install it", error=BadInputError)
    assert str(got.value) == ("cpdebug_raises is installed but failed to import: RuntimeError: built for another ABI "
                              "(CPDEBUG_DEBUG=1 shows the traceback)")


def test_the_first_installed_of_several_and_a_broken_one_stops_the_search(tmp_path, monkeypatch):
    """TensorRT-RTX's two module names (`trt_library`): the first installed one is taken; one installed but failing
    is said, not passed over for the hint."""
    _package(tmp_path, "cpdebug_second", "WHO = 'second'\n")
    _package(tmp_path, "cpdebug_broken_first", "import cpdebug_not_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert optional(("cpdebug_absent", "cpdebug_second"), "hint").WHO == "second"
    with pytest.raises(BackendUnavailableError, match="^cpdebug_broken_first is installed but failed"):
        optional(("cpdebug_broken_first", "cpdebug_second"), "hint")


def test_missing_is_the_module_asked_for_or_its_package():
    assert missing("a.b.c", ModuleNotFoundError("x", name="a"))
    assert missing("a.b.c", ModuleNotFoundError("x", name="a.b.c"))
    assert not missing("a.b.c", ModuleNotFoundError("x", name="ab"))
    assert not missing("ray", ModuleNotFoundError("No module named 'colorama'", name="colorama"))
    assert not missing("ray", ImportError("libcudart.so.12: cannot open shared object file", name="ray"))


def test_a_broken_ray_and_devkit_in_a_process_say_their_own_error(tmp_path):
    """In a fresh process with a `ray` and a `nuscenes` package of their own first on `sys.path` (installed, failing
    to import): the sweep's Ray import and the devkit's say so, exit 3, not "--ray needs Ray" / "not installed"."""
    _package(tmp_path, "ray", "import colorama_vendored_by_ray\n")
    _package(tmp_path, "nuscenes", "raise OSError('libGL.so.1: cannot open shared object file')\n")
    script = (
        "from cp_debug.errors import CpDebugError\n"
        "from cp_debug.sweep.executor import ray_module\n"
        "from cp_debug.eval.devkit import check_inputs\n"
        "for call in (ray_module, lambda: check_inputs({}, {}, ('car',))):\n"
        "    try:\n"
        "        call()\n"
        "    except CpDebugError as err:\n"
        "        print(int(err.exit_code), err)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tmp_path), str(ROOT),
                                                                    os.environ.get("PYTHONPATH"))))}
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines() == [
        "3 Ray is installed but failed to import: ModuleNotFoundError: No module named 'colorama_vendored_by_ray' "
        "(CPDEBUG_DEBUG=1 shows the traceback)",
        "3 nuscenes-devkit is installed but failed to import: OSError: libGL.so.1: cannot open shared object file "
        "(CPDEBUG_DEBUG=1 shows the traceback)"]


class _Refuses:
    """A lock that fails the test where it is taken."""

    def __enter__(self):
        raise AssertionError("the imports' lock was taken")

    def __exit__(self, *exc):
        return False


def test_only_an_import_still_to_make_takes_the_lock(tmp_path, monkeypatch):
    """A module imported already comes back without the lock (a sweep's bag reader asking for rosbags again never
    waits for the metrics helper's devkit import); one still to import takes it."""
    from cp_debug import imports

    _package(tmp_path, "cpdebug_not_yet", "")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(imports, "_LOCK", _Refuses())
    assert imports.load("json") is sys.modules["json"]
    assert optional("json", "hint") is sys.modules["json"]
    with pytest.raises(AssertionError, match="lock was taken"):
        imports.load("cpdebug_not_yet")


# `cpdebug bisect` in a fresh process, stopped where the request is checked and the run would begin (`run_bisect`):
# which heavy libraries it imported by then, and the phase its report's time begins with
_UNTIL_THE_RUN = """
import json, sys
from cp_debug.cli import bisect_cmd

def stop(request, outputs, third_party, budget=None, phases=None):
    heavy = sorted(m for m in %r if m in sys.modules)
    print("RESULT " + json.dumps({"heavy": heavy, "phases": list(phases.to_json())}), file=sys.__stdout__, flush=True)
    return 0

bisect_cmd.run_bisect = stop
sys.argv = ["cpdebug", "bisect", *sys.argv[1:]]
from cp_debug.cli.main import main
main()
"""
HEAVY = ("torch", "onnxruntime", "pandas", "polygraphy", "matplotlib", "numba", "onnx_graphsurgeon", "transformers",
         "scipy", "tensorrt", "numpy", "onnx")  # numpy and onnx too: the start stays light (issue 118, item 3)


@pytest.mark.parametrize("backends", ["torch,ort", "torch,ort-cpu-fp16,ort-cpu-int8", pytest.param(
    "torch-cuda,ort-cuda-fp16", marks=(pytest.mark.gpu, pytest.mark.needs("cuda", "onnxruntime-gpu")))])
def test_bisect_checks_its_request_without_a_heavy_library(tmp_path, backends):
    """Issue 118 (a process that starts at once): `cpdebug bisect` checks everything it is given (options, backends
    found, outputs writable) as its first phase, `check`, and imports none of the heavy libraries for it; each is
    imported where it is used (torch to build the model, ONNX Runtime where a session is made), so the report's time
    begins with the interpreter, typer and the option parsing alone. On CUDA too: the driver is asked for a GPU
    through NVML, the libraries found on disk (item 2: 2.16 s to the end of the check on an H200 when it asked
    torch and ONNX Runtime)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    r = subprocess.run([sys.executable, "-c", _UNTIL_THE_RUN % (HEAVY,), "--preset", "tiny", "-b", backends,
                        "--json", str(tmp_path / "r.json"), "-q"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.split("RESULT ", 1)[1])
    assert got["heavy"] == [], f"checking the request imported {got['heavy']}"
    assert got["phases"][0] == "check"


def test_a_backend_missing_is_said_in_the_check_without_importing_the_others(tmp_path):
    """The check finds a library without importing it: onnxruntime blocked (as not installed) is exit 3 with its
    hint, and torch, found, was not imported for it."""
    script = _UNTIL_THE_RUN.replace("import json, sys\n", "import json, sys\nsys.modules['onnxruntime'] = None\n")
    script = script.replace('main()\n', 'try:\n    main()\nfinally:\n    print("TORCH", "torch" in sys.modules)\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    r = subprocess.run([sys.executable, "-c", script % (HEAVY,), "--preset", "tiny", "-b", "torch,ort", "-q"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "ort backends need ONNX Runtime: pip install onnxruntime" in r.stderr
    assert "TORCH False" in r.stdout

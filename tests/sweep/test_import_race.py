"""No import races (issue 87): `sweep --ray local` exited 3 "--ray needs Ray" one run in two on the 2-core machine, Ray
installed. The metrics' helper imported nuscenes-devkit, and OpenCV's loader with it (`cv2/__init__.py`: sys.path
copied, edited, the copy assigned back), while the main thread imported Ray, whose `__init__` inserts its vendored
packages' folder at sys.path[0] and imports colorama from it: the copy undid the entry, and the ImportError was read
as "not installed". Now both imports go through `cp_debug.imports`' one lock, the devkit's begins once the frames run,
and a library that is installed and fails to import says its own error.

Each race runs in a fresh process (`race_child.py`: nothing imported yet), where colorama is Ray's vendored copy alone,
as on a machine where nothing else installs it: a lost entry fails Ray's import there, as in the bars."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sweep.ray_lock import one_ray_module

# found, not imported: the children import them (nuscenes-devkit and Ray took a pytest worker 10 s to import)
_ABSENT = [name for name in ("ray", "nuscenes", "cv2") if importlib.util.find_spec(name) is None]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_ABSENT), reason=f"needs {', '.join(_ABSENT)}")]

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("race_child.py")
RUNS = 8  # the bars: 2 of 5 and 2 of 4 runs in a row failed; unfixed, the `natural` child lost 10 runs of 18 here


def _child(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "CPDEBUG_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, str(CHILD), *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _race(mode: str) -> dict:
    r = _child(mode)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _from_rays_folder(got: dict) -> bool:
    return got["colorama"] is not None and "thirdparty_files" in Path(got["colorama"]).parts


def test_the_race_held_open_loses_rays_entry_and_says_so_in_rays_words():
    """The gate bites: OpenCV imported plainly on a helper, held inside its window until Ray's `__init__` has inserted
    its folder, assigns its copy back over it, every time; Ray's `import colorama` fails, and the sweep's Ray import
    says that — Ray installed but failing, in its own words — never "--ray needs Ray: pip install …"."""
    got = _race("unlocked")
    assert not got["ray_path"]
    assert got["said"] == ("BackendUnavailableError: Ray is installed but failed to import: ModuleNotFoundError: No "
                           "module named 'colorama' (CPDEBUG_DEBUG=1 shows the traceback)"), got


def test_the_sweeps_own_imports_held_the_same_way_keep_rays_entry():
    """The metrics helper's devkit import (`metrics._import_devkit`) and the sweep's Ray import (`executor.ray_module`),
    held at the same points: the Ray import waits for the imports' lock instead of running inside OpenCV's window."""
    got = _race("gated")
    assert got["said"] is None and got["ray_path"] and _from_rays_folder(got), got


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_opencv_on_a_helper_and_ray_side_by_side_many_times_in_a_row():
    """The race itself, nothing held, `RUNS` fresh processes in a row: OpenCV imported on a helper through the
    imports' lock (as the devkit's import is), Ray's on the main thread as soon as the helper starts OpenCV's. Every
    run imports Ray with its folder kept (unfixed, this lost it in 10 runs of 18)."""
    for run in range(RUNS):
        got = _race("natural")
        assert got["said"] is None and got["ray_path"] and _from_rays_folder(got), (run, got)


@pytest.mark.long  # a Ray cluster of its own: .ci/run's second step, not the README's test command
def test_a_ray_sweep_in_a_fresh_process_never_says_ray_is_missing(tmp_path):
    """The command of the bars, whole, in a process of its own (a tiny preset, one frame: ~20 s on the 2-core
    machine): a sweep's exit code (0, 4 or 1, by its frames' words), run on Ray, not the 3 of "--ray needs Ray"."""
    from cp_debug.sweep.executor import RAY_HINT

    out = tmp_path / "sweep"
    with one_ray_module():
        r = _child("cli", "sweep", "--backends", "torch,ort-cpu-fp16", "--preset", "tiny", "--level", "stage", "--n",
                   "1", "--bisect-top", "0", "--bootstrap", "20", "--no-html", "-q", "--out", out, "--ray", "local",
                   "--ray-workers", "1", timeout=600)
    assert r.returncode in (0, 1, 4), r.stderr[-3000:]
    assert RAY_HINT not in r.stderr and "failed to import" not in r.stderr, r.stderr[-3000:]
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["settings"]["executor"]["kind"] == "ray" and len(doc["frames"]) == 1

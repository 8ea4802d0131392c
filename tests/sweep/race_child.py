"""A fresh process for tests/sweep/test_import_race.py (issue 87): a sweep's Ray import beside the metrics helper's
import of nuscenes-devkit, whose OpenCV copies `sys.path` and assigns the copy back.

`python race_child.py MODE [ARGS]`, where MODE is
- `gated`: the sweep's own imports — the devkit's on a helper (`metrics._import_devkit`, as `MetricsAhead.begin` runs
  it) and Ray's on the main thread (`executor.ray_module`) — with OpenCV's loader held inside its window (sys.path
  copied, not yet assigned back) until Ray's `__init__` has inserted its folder, or the main thread waits for the
  imports' lock instead; then OpenCV's loader finishes first, as the bars hit by chance;
- `unlocked`: the same hold with OpenCV imported plainly on the helper (the devkit's import as it was): the race
  itself, every time;
- `natural`: OpenCV imported on a helper through the imports' lock, as the devkit's import runs it
  (`imports.load`), and Ray's on the main thread (`executor.ray_module`) as soon as the helper starts OpenCV's,
  nothing held: the race of the bars, at its moment (unfixed, 10 runs of 18 here lost Ray's entry), in 1 s of a process
  rather than the devkit's 4;
- `cli ARGS…`: `cpdebug ARGS…` (the console script's `main`).
Every mode runs where colorama is Ray's vendored copy alone (`RaysColoramaAlone`), as on a machine where nothing else
installs it (CI's; this one has awscli's): a lost entry fails Ray's import there, as in the bars. The modes but `cli`
print one JSON line: what the Ray import said (None: it imported), whether Ray's folder is on `sys.path`, the file
colorama came from.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import threading

TIMEOUT_S = 120  # a hold that waits this long is a bug of the test (or a deadlock): the child goes on regardless


class RaysColoramaAlone(importlib.abc.MetaPathFinder):
    """colorama found only in Ray's vendored folder (`ray/thirdparty_files`), where that is on `sys.path`."""

    def find_spec(self, name, path=None, target=None):
        if name != "colorama":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if p.endswith("thirdparty_files")])
        if spec is None:
            raise ModuleNotFoundError("No module named 'colorama'", name="colorama")
        return spec


class _Told:
    """The imports' lock (`cp_debug.imports._LOCK`) that sets `waiting` when a thread finds it held and waits."""

    def __init__(self, lock, waiting: threading.Event):
        self.lock, self.waiting = lock, waiting

    def __enter__(self):
        if not self.lock.acquire(blocking=False):
            self.waiting.set()
            self.lock.acquire()

    def __exit__(self, *exc):
        self.lock.release()


def _race(mode: str) -> dict:
    from cp_debug import imports
    from cp_debug.errors import CpDebugError
    from cp_debug.sweep import executor, metrics

    ready, go, done = threading.Event(), threading.Event(), threading.Event()
    hold = mode != "natural"

    def gate(event: str, args: tuple) -> None:  # an audit hook: "import" comes before the import system's locks
        if event != "import" or args[0] not in ("cv2", "cv2.load_config_py3", "ray._version"):
            return
        if args[0] == "cv2" and not hold:
            ready.set()  # the helper begins OpenCV's import: Ray's goes at once
        elif args[0] == "cv2.load_config_py3" and hold:
            ready.set()
            go.wait(TIMEOUT_S)  # inside OpenCV's window: sys.path copied, not yet assigned back
        elif args[0] == "ray._version" and hold:
            go.set()  # Ray's folder is on sys.path now
            done.wait(TIMEOUT_S)  # the helper's import over (OpenCV's copy assigned back) before Ray goes on

    sys.addaudithook(gate)
    imports._LOCK = _Told(imports._LOCK, go)
    def helper_import() -> None:
        try:
            if mode == "gated":
                metrics._import_devkit()
            elif mode == "natural":
                imports.load("cv2")
            else:
                import cv2  # noqa: F401
        finally:
            done.set()
            ready.set()  # an OpenCV whose loader never reached the gate: the main thread goes on, the test says so

    helper = threading.Thread(target=helper_import, name="race-helper")
    helper.start()
    ready.wait(TIMEOUT_S)
    try:
        executor.ray_module()
        said = None
    except CpDebugError as err:
        said = f"{type(err).__name__}: {err}"
    helper.join()
    colorama = sys.modules.get("colorama")
    return {"said": said, "ray_path": any(p.endswith("thirdparty_files") for p in sys.path),
            "colorama": getattr(colorama, "__file__", None)}


def main() -> None:
    sys.meta_path.insert(0, RaysColoramaAlone())
    mode = sys.argv[1]
    if mode == "cli":
        sys.argv = ["cpdebug", *sys.argv[2:]]
        from cp_debug.cli.main import main as cpdebug

        cpdebug()
        return
    print(json.dumps(_race(mode)), flush=True)


if __name__ == "__main__":
    main()

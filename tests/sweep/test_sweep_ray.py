"""The Ray path, with one Ray cluster for the module: `sweep --ray local` (the CLI, run in this process) starts Ray's
own cluster on this machine and gives the sweep.json numbers of the in-process sweep, with its one worker killed
mid-sweep and retried; `--ray auto` without a running cluster is one line saying which form is which."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from cp_debug.data.frames import held_out
from tests.cli_run import cpdebug
from tests.sweep.ray_lock import one_ray_module

# ray imported by the tests: not while collecting; `long`: .ci/run's second step, not the README's test command
pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.needs("ray")]

ROOT = Path(__file__).resolve().parents[2]
ARGS = ("sweep", "--backends", "torch,ort-cpu-fp16", "--preset", "tiny", "--level", "stage", "--n", "3",
        "--shard-size", "1", "--bisect-top", "0", "--bootstrap", "20", "--no-html", "-q")
NO_ADDRESS = {"RAY_ADDRESS": None}  # a developer's RAY_ADDRESS would point --ray auto at their cluster


@pytest.fixture(scope="module", autouse=True)
def _alone():
    """No other module's Ray cluster comes up while these run (`ray_lock`)."""
    with one_ray_module():
        yield


@pytest.fixture(scope="module")
def here(tmp_path_factory) -> tuple[int, Path]:
    """The in-process sweep the Ray sweeps of this module are held against: (its exit code, its folder)."""
    out = tmp_path_factory.mktemp("in_process") / "here"
    done = cpdebug(*ARGS, "--out", out, cwd=ROOT)
    assert done.returncode in (0, 1, 4), done.stderr
    return done.returncode, out


def _numbers(out: Path) -> dict:
    """sweep.json less what differs between runs of the same numbers: versions, the executor, where it was written."""
    doc = json.loads((out / "sweep.json").read_text())
    doc.pop("environment")
    doc["settings"] = {k: v for k, v in doc["settings"].items() if k != "executor"}
    return doc


def _gcs_running() -> bool:
    """A Ray cluster's GCS server runs on this machine (what `--ray auto` finds: Ray scans the processes for it)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if "gcs_server" in comm.read_text():
                return True
        except OSError:  # the process ended meanwhile
            continue
    return False


def test_ray_auto_without_a_cluster_says_which_form_is_which(tmp_path):
    # first in the module: the test below starts (and shuts down) a cluster of its own
    import ray

    if ray.is_initialized() or os.path.exists("/tmp/ray/ray_current_cluster"):
        pytest.skip("a Ray cluster may be running on this machine: --ray auto would join it")
    r = cpdebug(*ARGS, "--out", tmp_path / "auto", "--ray", "auto", cwd=ROOT, env=NO_ADDRESS)
    if r.returncode == 0 and _gcs_running():  # under pytest-xdist another test's cluster came up meanwhile: joined
        pytest.skip("another test's Ray cluster was running: --ray auto joined it, as Ray means it")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "cpdebug: error: no running Ray cluster found: start one with `ray start --head`, or use --ray local for a "
        "cluster on this machine"], r.stderr
    assert not ray.is_initialized()


def test_in_the_server_another_address_lets_the_kept_local_cluster_go_first():
    """A cluster a `--ray local` sweep left in the server is no answer to `--ray auto` (or an address): it is let go
    (with its workers) before Ray is asked for the one the user named, which here does not exist."""
    from cp_debug.errors import BadInputError
    from cp_debug.sweep import kept
    from cp_debug.sweep.executor import RayExecutor

    gone: list = []
    with kept.keep_between():
        kept.put("ray", "the local cluster's key", "cluster", gone.append)
        kept.put("ray-workers", "settings", "workers", gone.append)
        saved = os.environ.pop("RAY_ADDRESS", None)
        try:
            with pytest.raises(BadInputError, match="no running Ray cluster found"):
                RayExecutor(settings=None, address="auto")._ray()
        finally:
            if saved is not None:
                os.environ["RAY_ADDRESS"] = saved
        assert gone == ["workers", "cluster"] and kept.held() == []


def test_what_the_cluster_cannot_hold_is_one_line_and_leaves_no_folder(tmp_path):
    # Ray's own cluster on this machine, asked for more CPUs a worker than it has (executor.actors_for)
    import ray

    out = tmp_path / "refused"
    r = cpdebug(*ARGS, "--out", out, "--ray", "local", "--ray-cpus-per-worker", "4096", cwd=ROOT, env=NO_ADDRESS)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert re.fullmatch(r"cpdebug: error: --ray-cpus-per-worker 4096: the Ray cluster has \d+ CPU\(s\); give fewer "
                        r"workers or CPUs per worker", lines[0]), lines  # its CPUs as Ray counts them (cgroups)
    assert not out.exists()  # its manifest taken back: the same --out runs again without --resume
    from cp_debug.sweep import executor as ex

    if ex._SHUTTING_DOWN is not None:
        ex._SHUTTING_DOWN.join()
    assert not ray.is_initialized()


def test_ray_local_gives_the_in_process_numbers_and_survives_a_killed_worker(tmp_path, monkeypatch, here):
    import ray

    from cp_debug.sweep import executor as ex

    code, plain = here
    pids, killed = [], []
    started, told = ex.RayExecutor.start, ex.ChunkPlan.tell

    def start_and_note(self):
        actors = started(self)
        pids.append(ray.get(actors[0].getpid.remote()))
        return actors

    def tell_and_kill(self, worker, frames, seconds):
        # the first chunk is back: the second, queued on the actor with it, is in its hands — kill it there
        if not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        told(self, worker, frames, seconds)

    monkeypatch.setattr(ex.RayExecutor, "start", start_and_note)
    monkeypatch.setattr(ex.ChunkPlan, "tell", tell_and_kill)
    # every frame to the actor: the driver's own lane (its test below) could run all three before the actor is up
    monkeypatch.setattr(ex.RayExecutor, "start_lane", lambda self, subject, tasks: None)
    local = cpdebug(*ARGS, "--out", tmp_path / "local", "--ray", "local", "--ray-workers", "1", cwd=ROOT,
                    env=NO_ADDRESS)
    assert killed
    assert local.returncode == code, local.stderr
    if ex._SHUTTING_DOWN is not None:  # shut down on a helper thread beside the metrics, joined before exit
        ex._SHUTTING_DOWN.join()
    assert not ray.is_initialized()  # the cluster --ray local started is shut down with the sweep
    on_ray = json.loads((tmp_path / "local" / "sweep.json").read_text())["settings"]["executor"]
    assert on_ray["kind"] == "ray" and on_ray["address"] == "local" and on_ray["workers"] == 1
    # one actor gets the whole host's CPUs (and threads), not Ray's default of one (issue 71)
    assert on_ray["cpus_per_worker"] == on_ray["cluster_cpus"] >= 1
    # the export reached the actor through Ray's object store, not a folder only the driver's machine has (issue 71)
    assert not (tmp_path / "local" / "model").exists()
    assert on_ray["chunks"] >= 2 and len(on_ray["peak_memory"]) == 1 and on_ray["peak_memory"][0]["rss_mb"] > 0
    # the seconds before the frames: Ray's start, then the actor's warm-up, export and sessions, in that order
    line = on_ray["timeline"]
    assert line["start"] <= line["ray"] <= 0
    (actor,) = line["actors"]
    assert line["start"] <= actor["began"] <= actor["warm"] <= actor["asked"] <= actor["fetched"] <= actor["open"]
    assert on_ray["driver_lane"] is None
    assert _numbers(tmp_path / "local") == _numbers(plain)
    assert sorted(f["token"] for f in _numbers(plain)["frames"]) == [f.token for f in held_out(3)]


def test_ray_local_runs_frames_in_the_driver_while_ray_and_its_actor_start(tmp_path, here):
    """The driver's lane (`driver_lane.py`, issue 87): frames of the sweep run in the driver from its export on, Ray
    still starting, until the actor is up — as many as it has time for, none to all; the numbers are the in-process
    sweep's whoever ran each frame, and the lane is said in the executor's record."""
    code, plain = here
    local = cpdebug(*ARGS, "--out", tmp_path / "local", "--ray", "local", "--ray-workers", "1", cwd=ROOT,
                    env=NO_ADDRESS)
    assert local.returncode == code, local.stderr
    on_ray = json.loads((tmp_path / "local" / "sweep.json").read_text())["settings"]["executor"]
    lane = on_ray["driver_lane"]
    assert lane["error"] is None and lane["began"] <= lane["open"] and 0 <= lane["frames"] <= 3, lane
    assert lane["stopped"] is not None and (lane["frames"] == 0 or lane["open"] <= lane["stopped"]), lane
    # who ran each frame: the actor's chunks (with their own seconds) and the lane's, every frame once
    (work,) = on_ray["actor_work"]
    assert work["frames"] + lane["frames"] == 3 and (work["seconds"] > 0) == (work["frames"] > 0), on_ray
    assert on_ray["driver_busy_seconds"] >= 0
    assert _numbers(tmp_path / "local") == _numbers(plain)


def test_an_executor_lets_go_of_its_ray_references_before_ray_shuts_down(tmp_path):
    """`RayExecutor.close` lets go of every Ray reference it holds before Ray's shutdown starts on its helper thread:
    one freed while that shutdown runs makes Ray end the process on the spot ("the core worker has already been
    shutdown"), which ended this module's killed-worker test's pytest worker now and then. In a child process (a
    regression ends it, not this worker): Ray started, the export put into its object store, closed, the executor
    dropped at once (inside the shutdown's window), the shutdown waited for."""
    import subprocess
    import sys

    script = (
        "import gc\n"
        "from cp_debug.sweep import executor as ex\n"
        "e = ex.RayExecutor(settings=None, address='local')\n"
        "e.ship({'stage': b'x' * 1024})\n"
        "assert e.stages and e._started\n"
        "e.close()\n"
        "assert (e.actors, e.stages, e.opening) == ([], [], []), 'Ray references held past close'\n"
        "del e\n"
        "gc.collect()\n"
        "ex._SHUTTING_DOWN.join()\n"
        "print('alive after the drop', flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "alive after the drop" in r.stdout, (r.returncode, r.stdout, r.stderr[-2000:])


def test_in_the_server_the_next_sweep_takes_the_cluster_and_workers_the_sweep_before_left(tmp_path, here):
    """Issue 87, item 3: in the server (`kept.keep_between`), a `--ray local` sweep leaves its cluster and its actor
    with its sessions open; the next sweep of the same settings takes them — no Ray start, no driver's lane, its
    actor's sessions opened before its frames began, every frame the actor's — and gives the in-process numbers.
    The server's end kills the actor and shuts Ray down."""
    import ray

    from cp_debug.sweep import kept

    code, plain = here

    def sweep(name: str, *more: str) -> dict:
        done = cpdebug(*ARGS, "--out", tmp_path / name, "--ray", "local", "--ray-workers", "1", *more, cwd=ROOT,
                       env=NO_ADDRESS)
        assert done.returncode in (0, 1, 4), done.stderr
        return json.loads((tmp_path / name / "sweep.json").read_text())["settings"]["executor"]

    def actor_pid() -> int:
        (actor,) = kept._held["ray-workers"][1].actors
        return ray.get(actor.getpid.remote())

    with kept.keep_between():
        first = sweep("first")
        assert not first["workers_kept"] and kept.held() == ["ray", "ray-workers"]
        pid = actor_pid()
        ray.get(kept._held["ray-workers"][1].opening)  # its sessions open (the driver's lane may have run all 3)
        second = sweep("second")
        assert second["workers_kept"] and second["driver_lane"] is None
        assert actor_pid() == pid and second["actor_work"][0]["frames"] == 3
        assert second["timeline"]["actors"][0]["open"] < 0  # open before this sweep's frames phase began
        assert _numbers(tmp_path / "second") == _numbers(plain)
    # the server's end: the actor and the cluster let go (other settings' keys: tests/sweep/test_kept.py)
    assert kept.held() == [] and not ray.is_initialized()

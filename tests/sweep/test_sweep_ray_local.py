"""`sweep --ray local` through the CLI (the Ray runs in fresh processes, the plain sweep in this one): Ray's own local
cluster on this machine gives the same sweep.json numbers as the in-process sweep; `--ray auto` without a running
cluster is one line saying which form does what."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_run import cpdebug as run_cli
from tests.sweep.ray_lock import one_ray_module

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _alone():
    """No other module's Ray cluster comes up while these run (`ray_lock`)."""
    with one_ray_module():
        yield

ROOT = Path(__file__).resolve().parents[2]
ARGS = ("sweep", "--backends", "torch,ort-cpu-fp16", "--preset", "tiny", "--level", "stage", "--n", "2",
        "--shard-size", "1", "--bisect-top", "0", "--bootstrap", "20", "--no-html", "-q")


def cpdebug(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "cp_debug.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=900, cwd=ROOT)


def _numbers(out: Path) -> dict:
    """sweep.json less what differs between runs of the same numbers: versions, the executor, where it was written."""
    doc = json.loads((out / "sweep.json").read_text())
    doc.pop("environment")
    doc["settings"] = {k: v for k, v in doc["settings"].items() if k != "executor"}
    return doc


def test_ray_local_gives_the_in_process_numbers(tmp_path):
    here = run_cli(*ARGS, "--out", str(tmp_path / "here"), cwd=ROOT)  # in process; Ray's run starts its own
    assert here.returncode in (0, 1, 4), here.stderr
    local = cpdebug(*ARGS, "--out", str(tmp_path / "local"), "--ray", "local", "--ray-workers", "1")
    assert local.returncode == here.returncode, local.stderr
    on_ray = json.loads((tmp_path / "local" / "sweep.json").read_text())["settings"]["executor"]
    assert on_ray["kind"] == "ray" and on_ray["address"] == "local" and on_ray["workers"] == 1
    assert _numbers(tmp_path / "local") == _numbers(tmp_path / "here")
    assert len(_numbers(tmp_path / "here")["frames"]) == 2


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
    import ray

    if ray.is_initialized() or os.path.exists("/tmp/ray/ray_current_cluster"):
        pytest.skip("a Ray cluster may be running on this machine: --ray auto would join it")
    r = cpdebug(*ARGS, "--out", str(tmp_path / "auto"), "--ray", "auto")
    if r.returncode == 0 and _gcs_running():  # under pytest-xdist another test's cluster came up meanwhile: joined
        pytest.skip("another test's Ray cluster was running: --ray auto joined it, as Ray means it")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "cpdebug: error: no running Ray cluster found: start one with `ray start --head`, or use --ray local for a "
        "cluster on this machine"], r.stderr

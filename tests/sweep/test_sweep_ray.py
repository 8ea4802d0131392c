"""The Ray path on a local Ray cluster: the same sweep.json as in process, and a worker killed mid-sweep retried."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from cp_debug.sweep.records import SweepSettings
from cp_debug.sweep.report import sweep_doc
from cp_debug.sweep.session import SweepOptions, run_sweep
from tests.sweep.ray_lock import one_ray_module

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

SETTINGS = SweepSettings(("torch", "ort-cpu-fp16"), preset="tiny", level="stage")


def _comparable(doc: dict) -> dict:
    doc = dict(doc)
    doc.pop("environment")
    doc["settings"] = {k: v for k, v in doc["settings"].items() if k != "executor"}
    return doc


@pytest.fixture(scope="module")
def local_ray():
    with one_ray_module():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


def test_ray_gives_the_same_sweep_json_and_survives_a_killed_worker(local_ray, tmp_path):
    from cp_debug.sweep import executor as ex

    base = SweepOptions(SETTINGS, tmp_path / "inproc", n=3, shard_size=1, bisect_top=0, bootstrap=20)
    local = sweep_doc(run_sweep(base), base)

    killed = []
    started = ex.RayExecutor.start

    def start_and_arm(self):  # kill the actor's process while it works on the second shard
        actors = started(self)
        pid = ray.get(actors[0].getpid.remote())
        first = tmp_path / "ray" / "shards" / "shard-00000.json"

        def kill():
            while not first.exists():
                time.sleep(0.05)
            time.sleep(0.2)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        threading.Thread(target=kill, daemon=True).start()
        return actors

    ex.RayExecutor.start = start_and_arm
    try:
        opts = SweepOptions(SETTINGS, tmp_path / "ray", n=3, shard_size=1, bisect_top=0, bootstrap=20, ray="auto",
                            ray_workers=1)
        outcome = run_sweep(opts)
    finally:
        ex.RayExecutor.start = started
    assert killed
    assert [r.token for r in outcome.results] == [f["token"] for f in sorted(local["frames"], key=lambda f: f["token"])]
    assert _comparable(sweep_doc(outcome, opts)) == _comparable(local)

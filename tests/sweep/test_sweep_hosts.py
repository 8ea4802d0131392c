"""A Ray sweep over a cluster of two nodes (Ray's own `cluster_utils.Cluster`: two raylets on this machine, each a
node of its own): the actor on the node that is not the driver's gets the `--checkpoint` and the `--scenes` frames
from the driver through Ray's object store (`sweep/ship.py`) — it writes the checkpoint to its own cache folder —,
and the sweep gives the numbers of the in-process sweep (issue 87, item 3)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.cli_run import cpdebug
from tests.sweep.ray_lock import one_ray_module

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.needs("ray"), pytest.mark.needs("nuscenes-devkit")]

ROOT = Path(__file__).resolve().parents[2]


def _numbers(out: Path) -> dict:
    """sweep.json less what differs between runs of the same numbers: versions, the executor."""
    doc = json.loads((out / "sweep.json").read_text())
    doc.pop("environment")
    doc["settings"] = {k: v for k, v in doc["settings"].items() if k != "executor"}
    return doc


@pytest.fixture
def two_nodes(tmp_path, monkeypatch):
    """A Ray cluster of two nodes of one CPU each, joined by this process; the actors' cache folder in tmp_path
    (the raylets' environment is this one's)."""
    import ray
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("CPDEBUG_CACHE_DIR", str(tmp_path / "cache"))
    with one_ray_module():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        try:
            cluster.add_node(num_cpus=1)
            ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def test_the_actor_on_another_node_gets_the_checkpoint_and_the_frames_from_the_driver(tmp_path, two_nodes):
    from cp_debug.data.scene_set import write_scene_set
    from cp_debug.data.scenes import heldout_seeds
    from cp_debug.eval.session import load_weights
    from cp_debug.models.centerpoint.presets import get_preset
    from cp_debug.pickles import save_checkpoint
    from cp_debug.recipes import catalog

    write_scene_set(get_preset("tiny"), tmp_path / "scenes", heldout_seeds(4))
    model = load_weights("tiny", None, True, 7, catalog.recipe()).model  # weights no default run has
    ckpt = save_checkpoint(model, tmp_path / "user" / "tiny.pth")
    args = ("sweep", "--scenes", tmp_path / "scenes", "--checkpoint", ckpt, "--backends", "torch,ort-cpu-fp16",
            "--preset", "tiny", "--level", "stage", "--shard-size", "1", "--bisect-top", "0", "--bootstrap", "20",
            "--no-html", "-q")
    here = cpdebug(*args, "--out", tmp_path / "here", cwd=ROOT)
    assert here.returncode in (0, 1, 4), here.stderr
    on_ray = cpdebug(*args, "--out", tmp_path / "ray", "--ray", "auto", cwd=ROOT)
    assert on_ray.returncode == here.returncode, on_ray.stderr

    executor = json.loads((tmp_path / "ray" / "sweep.json").read_text())["settings"]["executor"]
    assert executor["kind"] == "ray" and executor["workers"] == 2
    shipped = executor["shipped"]
    # one actor a node (one CPU each): the one beside the driver read the files itself, the other got them shipped;
    # each actor's first two chunks (one frame each) go out before its node is known, so both of its are shipped
    assert shipped["hosts_beside_driver"] and shipped["checkpoint"] and shipped["actors_on_other_hosts"] == 1
    assert shipped["frames"] >= 2
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:32]
    copy = tmp_path / "cache" / "shipped" / f"{digest}-tiny.pth"
    assert copy.read_bytes() == ckpt.read_bytes()  # written by the actor on the other node, from the object store
    assert _numbers(tmp_path / "ray") == _numbers(tmp_path / "here")


def test_a_shipped_checkpoint_found_in_the_cache_is_kept_as_recently_used(tmp_path, monkeypatch):
    """An actor's copy of a shipped checkpoint (`ship._local_copy`) is written once under its digest; found again,
    it is the same file, its bytes untouched, and marked recently used, so the cache's pruning (least recently
    used first) keeps it."""
    import os

    from cp_debug.sweep.ship import _local_copy

    monkeypatch.setenv("CPDEBUG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CPDEBUG_NO_CACHE", raising=False)
    data = os.urandom(4096)
    first = _local_copy("weights.pth", data)
    assert first.parent == tmp_path / "cache" / "shipped" and first.read_bytes() == data
    os.utime(first, (1_000_000, 1_000_000))  # written long ago
    again = _local_copy("weights.pth", data)
    assert again == first and again.read_bytes() == data and again.stat().st_mtime > 1_000_000

"""How many Ray actors a sweep starts, and with how many CPUs each (`placement.actors_for`), from the resources a
cluster reports (`ray.cluster_resources()`'s dict, as Ray gives it: floats, GPU absent without one); what the cluster
cannot hold is one line, never actors pending for ever with frames handed to them."""

from __future__ import annotations

import pytest

from cp_debug.errors import BadInputError
from cp_debug.sweep.placement import PER_CARD, actors_for, gpu_share, mps_running

TWO_GPUS = {"CPU": 32.0, "GPU": 2.0, "memory": 2.5e11, "node:10.0.0.1": 1.0}
TWO_CPUS = {"CPU": 2.0, "memory": 1.6e10, "object_store_memory": 7e9}


@pytest.mark.parametrize(("cluster", "cuda", "workers", "cpus", "expected"), [
    (TWO_GPUS, True, None, None, (4, 8)),  # two actors a card, the host's CPUs shared out (issue 87)
    ({**TWO_GPUS, "CPU": 8.0}, True, None, None, (2, 4)),  # one a card where two would get fewer than 4 CPUs each
    (TWO_GPUS, True, 1, None, (1, 32)),
    (TWO_GPUS, True, 2, 4, (2, 4)),
    (TWO_GPUS, True, 4, None, (4, 8)),  # two actors a card (issue 87)
    (TWO_CPUS, False, None, None, (2, 1)),  # a CPU sweep: one actor per CPU
    (TWO_CPUS, False, 1, None, (1, 2)),
    (TWO_CPUS, False, None, 2, (1, 2)),
])
def test_actors_fit_the_cluster(cluster, cuda, workers, cpus, expected):
    assert actors_for(cluster, cuda, workers, cpus) == expected


def test_under_mps_four_actors_share_a_card_by_default():
    assert actors_for(TWO_GPUS, True, None, None, mps=True) == (8, 4)
    assert actors_for({**TWO_GPUS, "CPU": 16.0}, True, None, None, mps=True) == (4, 4)  # CPUs bound it
    assert actors_for(TWO_CPUS, False, None, None, mps=True) == (2, 1)  # a CPU sweep: no card to share


def test_mps_is_read_from_its_pipe_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert not mps_running()
    (tmp_path / "control").write_text("")  # the daemon's socket, as a file for the test: its name is what is read
    assert mps_running()


@pytest.mark.parametrize(("cluster", "cuda", "workers", "cpus", "said"), [
    (TWO_GPUS, True, 2 * PER_CARD + 1, None, f"--ray-workers {2 * PER_CARD + 1}: the Ray cluster has 2 GPU(s), and a "
                                             f"card holds at most {PER_CARD} workers of a CUDA backend"),
    (TWO_CPUS, True, None, None, "the Ray cluster has no GPU"),
    (TWO_CPUS, False, 3, None, "--ray-workers 3 × 1 CPU(s) each: the Ray cluster has 2 CPU(s)"),
    (TWO_CPUS, False, None, 4, "--ray-cpus-per-worker 4: the Ray cluster has 2 CPU(s)"),
    (TWO_GPUS, True, 2, 20, "--ray-workers 2 × 20 CPU(s) each: the Ray cluster has 32 CPU(s)"),
])
def test_what_the_cluster_cannot_hold_is_one_line(cluster, cuda, workers, cpus, said):
    with pytest.raises(BadInputError) as err:
        actors_for(cluster, cuda, workers, cpus)
    assert said in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("gpus", "actors", "share"), [
    (2, 1, 1.0), (2, 2, 1.0), (1, 2, 0.5), (2, 3, 0.5), (2, 4, 0.5), (4, 12, 1 / 3), (1, 4, 0.25)])
def test_actors_beyond_the_cards_share_them_evenly(gpus, actors, share):
    """k = ⌈actors / gpus⌉ a card, each asking for 1/k of one: Ray can place every actor (k shares fit on a card and
    gpus × k ≥ actors); a share of gpus / actors (2/3 for 3 on 2 cards) would leave one pending."""
    got = gpu_share(gpus, actors)
    assert got == pytest.approx(share)
    per_card = int(round(1 / got))
    assert per_card * got <= 1 + 1e-9 and gpus * per_card >= actors

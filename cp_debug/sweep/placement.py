"""Where a Ray sweep's actors go: how many, with how many CPUs each (`actors_for`), the share of a card each asks
for (`gpu_share`), and whether NVIDIA MPS runs the cards' processes side by side (`mps_running`). Pure, but for the
MPS check: read from the cluster's resources (`ray.cluster_resources()`), no Ray imported."""

from __future__ import annotations

from cp_debug.errors import BadInputError

# CUDA actors a card may hold at most: each its own sessions and torch's allocator on the card; two or more keep a card
# busy while the others' host sections (glue, comparisons, detection matching) run (issue 87)
PER_CARD = 4
# the default a card: on an H200 host (16 cores, awml-base, torch-cuda,ort-cuda-fp16, 300 frames) one actor ran
# 10.1-11.2 frames/s once its sessions were open, two 12.4-13.0 (reports identical); under NVIDIA MPS, which runs the
# processes' kernels side by side, two 14.1, three 15.5, four 16.1 (docs/measurements.md, issue 87)
DEFAULT_PER_CARD, MPS_PER_CARD = 2, 4
CPUS_AN_ACTOR = 4  # no more actors a card than leave each this many of the host's CPUs


def actors_for(cluster: dict, cuda: bool, workers: int | None, cpus: int | None, mps: bool = False
               ) -> tuple[int, int]:
    """(actors, CPUs each) for a cluster of `cluster`'s resources (`ray.cluster_resources()`): for CUDA backends
    `DEFAULT_PER_CARD` actors a GPU by default (`MPS_PER_CARD` where `mps`: NVIDIA MPS runs on the driver's host),
    as many as leave each `CPUS_AN_ACTOR` CPUs, at least one a card; `--ray-workers` puts up to `PER_CARD` on each
    (`gpu_share`). Else the CPUs / `cpus` (default 1). Each actor's CPUs default to the cluster's shared out. What
    the cluster cannot hold is refused in one line: Ray would keep the actors beyond it pending for ever, and the
    frames handed to them with them."""
    total, gpus = max(1, int(cluster.get("CPU", 1))), int(cluster.get("GPU", 0))
    if cuda and gpus < 1:
        raise BadInputError("the Ray cluster has no GPU, and a CUDA backend's worker holds one: start the cluster on "
                            "a machine with GPUs, or use a CPU backend (torch, ort-cpu…)")
    if cuda and workers is not None and workers > gpus * PER_CARD:
        raise BadInputError(f"--ray-workers {workers}: the Ray cluster has {gpus} GPU(s), and a card holds at most "
                            f"{PER_CARD} workers of a CUDA backend: give at most {gpus * PER_CARD}")
    if cuda:
        per_card = max(1, min(MPS_PER_CARD if mps else DEFAULT_PER_CARD, total // (gpus * CPUS_AN_ACTOR)))
        n = workers or gpus * per_card
    else:
        n = workers or max(1, total // (cpus or 1))
    each = cpus or max(1, total // n)
    if n * each > total:
        given = f"--ray-workers {n} × {each} CPU(s) each" if workers else f"--ray-cpus-per-worker {each}"
        raise BadInputError(f"{given}: the Ray cluster has {total} CPU(s); give fewer workers or CPUs per worker")
    return n, each


def mps_running() -> bool:
    """Whether an NVIDIA MPS control daemon serves this host's CUDA processes (its pipe folder:
    $CUDA_MPS_PIPE_DIRECTORY, else the default /tmp/nvidia-mps, holding its `control` socket). Read on the driver's
    host: a cluster's other hosts are taken to be set up alike."""
    import os
    from pathlib import Path

    return (Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps") / "control").exists()


def gpu_share(gpus: int, actors: int) -> float:
    """The share of a card each of `actors` CUDA actors asks Ray for on a cluster of `gpus` cards: 1 where each has
    a card of its own, else 1/k for the k = ⌈actors / gpus⌉ that share one, so Ray places them evenly (a share of
    gpus/actors, 2/3 for 3 actors on 2 cards, would leave the third pending: two thirds do not fit beside one)."""
    return 1.0 / max(1, -(-actors // max(1, gpus)))

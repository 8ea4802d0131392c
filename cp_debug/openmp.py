"""OpenMP's threads in a cp_debug process: how torch's idle intra-op threads wait (`sleeping_threads`: PASSIVE unless
the user chose). Set before
torch loads libgomp, which reads its environment once: first thing in `cli.main.entry` (before a command is handed
to the server, whose own process set it the same way) and in a Ray actor (whose environment is its node's).
"""

from __future__ import annotations

import os


def sleeping_threads() -> None:
    """OpenMP's idle threads sleep instead of spinning (`OMP_WAIT_POLICY=PASSIVE`, unless the user set a policy;
    `GOMP_SPINCOUNT` still overrides it), set before torch loads libgomp, which reads it once. By default each of
    torch's intra-op threads spins for a while after a parallel region, on the cores that a command's other threads
    need: a sweep reads its next frame and judges its last one beside the frame it runs, its metrics and shards go
    on helper threads. Measured on the CPU machine (2 cores, tiny preset, 60 frames in process): the frames phase
    12.9-14.5 s spinning, 8.9-9.9 s sleeping; on a one-H200 host a 1000-frame awml-base sweep and the awml-base
    bisect were no slower sleeping (docs/measurements.md, issue 71's stop before midnight)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

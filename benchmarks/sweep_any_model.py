"""The speed item of issue 70: a sweep of any model over N samples against N plain reference + candidate runs of the
same samples, side by side in one process (the sessions built once in both; both read each sample's .npz).

    PYTHONPATH=. python benchmarks/sweep_any_model.py [N] [--torch FILE.py:FUNC] [--backends REF,CAND]

Default model: benchmarks/sweep_any_model.py:build (an MLP large enough that inference, not bookkeeping, is what a
sample costs: 512 → 2048 → 2048 → 1000 on a batch of 32), torch against ort-cpu-fp16. The sweep runs without its
bisects (--bisect-top 0: they are extra work on the flagged samples, by design). Prints both wall times and the ratio
(the issue's target: ≤ 1.2): plain runs and sweeps alternate for --rounds rounds, after a warm-up of each, and the
least of each is taken (the machine's load moves under both), in wall and in CPU seconds (CPU: less moved by other
work on a shared machine); the sweep first in the process, which pays numba's start
(the comparison kernels loaded from numba's cache, as a CLI sweep does), is said apart. Then the sweep's peak traced
Python memory at N and 2N, over --inputs DIR and over --data FILE.py:FUNC (flat in N: about the same)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def build():
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 1000))
    return net.eval(), (torch.randn(32, 512),)


def _samples(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        np.savez(folder / f"s{k:04d}.npz", input0=rng.standard_normal((32, 512)).astype(np.float32))
    return folder


def plain(model, samples, pairs) -> tuple[float, float]:
    """N reference + candidate runs: the runners built once (as the sweep builds them), every sample read and run
    through both; (wall, CPU) seconds."""
    import contextlib

    from cp_debug.sweep.samples import RUNNER_OPTIONS

    t, c = time.perf_counter(), time.process_time()
    with contextlib.ExitStack() as stack:
        runners = [stack.enter_context(model.runner(spec, **RUNNER_OPTIONS)) for _, spec in pairs]
        for sample in samples:
            for r in runners:
                r.infer(dict(sample.feed))
    return time.perf_counter() - t, time.process_time() - c


def swept(model, samples, pairs, out: Path, traced: bool = False):
    """The sweep's (wall, CPU) seconds (`traced`: its peak traced Python memory instead, tracemalloc slowing it)."""
    from cp_debug.files import write_json
    from cp_debug.sweep.samples import SampleSweepOptions, run_sample_sweep, sweep_doc

    if traced:
        tracemalloc.start()
    t, c = time.perf_counter(), time.process_time()
    opts = SampleSweepOptions(pairs, out, bisect_top=0)
    result = run_sample_sweep(model, samples, opts)
    write_json(out / "sweep.json", sweep_doc(result, opts, model))
    took = time.perf_counter() - t, time.process_time() - c
    if traced:
        took = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return took


DATA = """import numpy as np


def load_data():
    rng = np.random.default_rng(0)
    for _ in range({n}):
        yield {{"input0": rng.standard_normal((32, 512)).astype(np.float32)}}
"""


def data_peak(model, pairs, tmp: Path, n: int) -> int:
    """The peak traced Python memory of a sweep over `--data FILE.py:FUNC`'s `n` samples, the samples' reading
    (FUNC() run, each sample checked) included."""
    from cp_debug.samples.sets import sample_set

    script = tmp / f"data_{n}.py"
    script.write_text(DATA.format(n=n))
    tracemalloc.start()
    samples = sample_set(None, f"{script}:load_data", model.graph)
    swept(model, samples, pairs, tmp / f"data_{n}")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main(argv: list[str]) -> int:
    from cp_debug.backends.spec import REF_CANDIDATES, parse_backends
    from cp_debug.recipes.module.model import load_module_model
    from cp_debug.samples.sets import sample_set

    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=32)
    ap.add_argument("--torch", default=f"{Path(__file__).resolve()}:build")
    ap.add_argument("--backends", default="torch,ort-cpu-fp16")
    ap.add_argument("--rounds", type=int, default=5, help="plain runs and warm sweeps, alternating; the least of each")
    a = ap.parse_args(argv)
    pairs = tuple(parse_backends(a.backends, rule=REF_CANDIDATES))
    model = load_module_model(a.torch, None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = sample_set(_samples(tmp / "n", a.n), None, model.graph)
        large = sample_set(_samples(tmp / "2n", 2 * a.n), None, model.graph)
        plain(model, small, pairs)  # warm: first sessions, caches
        first = swept(model, small, pairs, tmp / "sweep_first")
        ps, ss = [], []
        for k in range(a.rounds):  # alternating: the machine's load moves under both
            ps.append(plain(model, small, pairs))
            ss.append(swept(model, small, pairs, tmp / f"sweep_{k}"))
        peak = swept(model, small, pairs, tmp / "mem_n", traced=True)
        peak2 = swept(model, large, pairs, tmp / "mem_2n", traced=True)
        data1, data2 = data_peak(model, pairs, tmp, a.n), data_peak(model, pairs, tmp, 2 * a.n)
    for k, what in ((0, "wall"), (1, "CPU")):
        p, s = min(x[k] for x in ps), min(x[k] for x in ss)
        print(f"{a.n} samples, {a.backends}, {what} time, least of {a.rounds} rounds: plain runs {p:.2f} s, sweep "
              f"{s:.2f} s, ratio {s / p:.2f} (target ≤ 1.2); the sweep first in the process {first[k]:.2f} s (ratio "
              f"{first[k] / p:.2f})")
        print("  plain " + " ".join(f"{x[k]:.2f}" for x in ps) + " | sweep " + " ".join(f"{x[k]:.2f}" for x in ss))
    print(f"sweep's peak traced memory: {peak / 2**20:.1f} MiB at N={a.n}, {peak2 / 2**20:.1f} MiB at N={2 * a.n}; "
          f"over --data FILE.py:FUNC (its reading included): {data1 / 2**20:.1f} MiB at N={a.n}, "
          f"{data2 / 2**20:.1f} MiB at N={2 * a.n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

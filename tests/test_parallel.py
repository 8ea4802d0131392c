"""cp_debug.parallel: a range split on block boundaries; a helper thread's work on a CUDA stream of its own."""

from __future__ import annotations

import pytest

from cp_debug.parallel import split


def test_split_covers_the_range_on_block_boundaries():
    assert split(10, 3) == [(0, 4), (4, 8), (8, 10)]
    parts = split(1_000_003, 4, align=1 << 16)
    assert parts[0][0] == 0 and parts[-1][1] == 1_000_003
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert all(lo % (1 << 16) == 0 for lo, _ in parts)


def test_on_stream_without_a_stream_runs_the_work_as_it_is():
    from cp_debug.parallel import on_stream

    assert on_stream(None, divmod, 17, 5) == (3, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_on_stream_queues_after_the_default_stream_and_returns_finished_work():
    """A helper thread's work on its stream reads what the caller queued on the default stream before it (not yet run
    when the helper starts), and is finished when `on_stream` returns."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from cp_debug.parallel import on_stream

    n = 1 << 24
    x = torch.zeros(n, device="cuda")
    for _ in range(200):  # queued on the default stream, ~10 ms: still running when the helper starts
        x.add_(1)
    stream = torch.cuda.Stream()
    with ThreadPoolExecutor(1) as pool:
        y = pool.submit(on_stream, stream, lambda: x * 2, after_default=True).result()
    assert stream.query()  # nothing of the helper's left running
    assert bool((y == 400).all())


def test_in_background_shortens_the_switch_interval_while_it_runs():
    """A warm-up on a helper thread holds the GIL in long stretches: while it runs, the main thread gets the GIL back
    within `_WARM_SWITCH_S`, and the process's own interval returns when the last helper ends, whatever it raised."""
    import sys
    import threading

    from cp_debug import parallel

    before = sys.getswitchinterval()
    go, inside = threading.Event(), []

    def work():
        inside.append(sys.getswitchinterval())
        go.wait(30)

    def fails():
        raise ValueError("a warm-up that fails ends quietly")

    threads = [parallel.in_background(work, "test-warm-a"), parallel.in_background(fails, "test-warm-b")]
    threads[1].join(30)
    assert sys.getswitchinterval() == min(before, parallel._WARM_SWITCH_S)  # one helper still runs
    go.set()
    threads[0].join(30)
    assert inside == [min(before, parallel._WARM_SWITCH_S)] and threads[0].name == "test-warm-a"
    assert sys.getswitchinterval() == before and parallel._WARMING == 0

"""A Ray actor's one frame loop (`actor.ActorBody`: a threaded actor whose `run_chunk` calls feed one
`run_frames` loop), run here on its own, without Ray: the chunks' frames come back to their own calls, as the worker
gives them in one list, and an error that ends the loop reaches the call waiting and every call after it."""

from __future__ import annotations

import threading

import pytest

from cp_debug.data.frames import held_out
from cp_debug.recipes import catalog
from cp_debug.errors import BadInputError
from cp_debug.sweep.records import FrameResult, SweepSettings

CP = catalog.recipe()  # the default recipe, CenterPoint (the command line resolves it)

SETTINGS = SweepSettings(("torch", "ort"), preset="tiny", level="stage", recipe=CP)


@pytest.fixture
def body(monkeypatch):
    """The actor's body with its worker opened here (its `open` fetches the stages from Ray's object store)."""
    import torch

    from cp_debug.sweep.actor import ActorBody

    threads = torch.get_num_threads()
    monkeypatch.setenv("CPDEBUG_COMPARE_THREADS", "1")  # the body sets it: put back after
    b = ActorBody(SETTINGS, cpus=1)
    b.worker = SETTINGS.lanes().make_worker(SETTINGS, subject=b.subject).open()
    yield b
    b.worker.close()
    torch.set_num_threads(threads)


def test_chunks_called_at_once_get_their_own_frames(body):
    items = list(enumerate(held_out(4)))
    plain = [r.to_json() for r in body.worker.run_frames(items)]
    chunks, got = [tuple(items[:1]), tuple(items[1:3]), tuple(items[3:])], {}

    def call(k: int) -> None:
        got[k] = body.run_chunk(chunks[k], [])

    calls = [threading.Thread(target=call, args=(k,)) for k in range(3)]  # as Ray's threads would, at once
    for c in calls:
        c.start()
    for c in calls:
        c.join()
    assert [got[k]["frames"] for k in range(3)] == [plain[:1], plain[1:3], plain[3:]]
    for k, chunk in enumerate(chunks):
        assert set(got[k]["tables"]) <= {f.token for _, f in chunk} and got[k]["seconds"] > 0
    assert [FrameResult.from_json(d).index for k in range(3) for d in got[k]["frames"]] == [0, 1, 2, 3]
    assert body.run_chunk((), [])["frames"] == []  # an empty chunk comes back at once


def test_an_error_that_ends_the_loop_reaches_every_call(body, monkeypatch):
    items = list(enumerate(held_out(2)))
    run_frames = body.worker.run_frames

    def broken(feed, ahead=None):
        for r in run_frames(feed, ahead):
            yield r
            raise BadInputError("the frame loop ended")  # after the first frame: its call waits for the second

    monkeypatch.setattr(body.worker, "run_frames", broken)
    with pytest.raises(BadInputError, match="the frame loop ended"):
        body.run_chunk(tuple(items), [])
    with pytest.raises(BadInputError, match="the frame loop ended"):  # the next call is told, not left waiting
        body.run_chunk(tuple(items[1:]), [])

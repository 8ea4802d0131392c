"""How a Ray sweep hands out its frames (`sweep/chunks.py`): chunks sized by each worker's measured speed, shrinking to
single frames at the end, and shards filled by whichever chunks bring their frames back. Pure: no Ray, no clock."""

from __future__ import annotations

import pytest

from cp_debug.data.frames import held_out
from cp_debug.sweep.chunks import ChunkPlan, ShardFill
from cp_debug.sweep.records import FrameResult
from cp_debug.sweep.shards import ShardTask, plan_shards


def _items(n: int):
    return list(enumerate(held_out(n)))


def _result(i: int, frame) -> FrameResult:
    return FrameResult(i, frame.token, "within_precision", None, 10, (), {}, None)


def test_an_unmeasured_worker_gets_first_frames_then_a_share_sized_by_its_speed():
    plan = ChunkPlan(_items(100), workers=("a", "b"), first=1, k=2.0, most_seconds=1000.0)
    assert len(plan.next("a")) == 1 and len(plan.next("b")) == 1
    plan.tell("a", 1, 1.0)  # a: 1 frame/s
    plan.tell("b", 3, 1.0)  # b: 3 frames/s, three quarters of the speed
    assert plan.size("b") == 37  # ceil(98 × 3/4 ÷ 2)
    assert plan.size("a") == 13  # ceil(98 × 1/4 ÷ 2)


def test_a_worker_measured_alone_takes_its_share_among_the_others_at_their_mean():
    plan = ChunkPlan(_items(40), workers=("a", "b"), most_seconds=1000.0)
    plan.tell("a", 2, 1.0)
    assert plan.size("a") == 10  # b counted at a's speed: half of 40, halved


def test_a_chunk_holds_at_most_most_seconds_of_its_workers_measured_work():
    plan = ChunkPlan(_items(1000), workers=("a",), most_seconds=4.0)
    plan.tell("a", 5, 2.0)  # 2.5 frames/s
    assert plan.size("a") == 10


def test_a_chunk_back_at_once_is_read_with_the_chunks_before_it():
    """An actor's frame loop runs a chunk's first frame while it judges the one before: a one-frame chunk can come
    back in hundredths of a second. Its speed is read with the chunks before it, back to `most_seconds` of them, not
    alone (100 frames/s, a 400-frame chunk next); older chunks drop out once newer ones cover that much."""
    plan = ChunkPlan(_items(1000), workers=("a",), most_seconds=4.0)
    plan.tell("a", 10, 4.0)  # 2.5 frames/s
    plan.tell("a", 1, 0.01)  # its work mostly done in the chunk before
    assert plan.rate["a"] == 11 / 4.01 and plan.size("a") == 11
    plan.tell("a", 20, 4.0)  # 5 frames/s now (the card to itself): the first two drop out
    assert plan.rate["a"] == 5.0
    plan.tell("a", 1, 0.0)  # no seconds of its own at all: counted with the one before
    assert plan.rate["a"] == 21 / 4.0


def test_the_chunks_shrink_to_single_frames_and_every_frame_is_handed_out_once_in_order():
    items = _items(60)
    plan = ChunkPlan(items, workers=(0, 1, 2), most_seconds=1000.0)
    sizes, handed = [], []
    w = 0
    while len(plan):
        chunk = plan.next(w)
        sizes.append(len(chunk))
        handed += chunk
        plan.tell(w, len(chunk), len(chunk) / (w + 1.0))  # worker w runs w + 1 frames a second
        w = (w + 1) % 3
    assert handed == items
    assert sizes[-3:] == [1, 1, 1] and max(sizes) > 5
    assert plan.next(0) == () and plan.size(0) == 0


def test_shards_are_filled_by_whichever_chunks_bring_their_frames_back():
    items = _items(5)
    tasks = plan_shards([f for _, f in items], 2)  # shards {0, 1}, {2, 3}, {4}
    fill = ShardFill(tasks)
    assert fill.finished() == []
    assert fill.add(_result(1, items[1][1])) is None
    assert fill.add(_result(2, items[2][1])) is None
    index, got = fill.add(_result(0, items[0][1]))
    assert index == 0 and [r.index for r in got] == [0, 1]
    assert [(i, [r.index for r in g]) for i, g in fill.partial()] == [(1, [2])]
    assert fill.add(_result(4, items[4][1]))[0] == 2
    with pytest.raises(KeyError):  # a frame comes back once
        fill.add(_result(4, items[4][1]))


def test_a_shard_its_partial_file_finished_is_written_once_and_a_resumed_one_counts_what_it_held():
    items = _items(4)
    a, b = items[:2], items[2:]
    tasks = [ShardTask(0, tuple(a), tuple(_result(i, f) for i, f in a)),
             ShardTask(1, tuple(b), (_result(*b[0]),))]
    fill = ShardFill(tasks)
    assert [(i, [r.index for r in g]) for i, g in fill.finished()] == [(0, [0, 1])]
    assert fill.finished() == []
    index, got = fill.add(_result(*b[1]))
    assert index == 1 and [r.index for r in got] == [2, 3]

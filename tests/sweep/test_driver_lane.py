"""The driver's lane (`sweep/driver_lane.py`, issue 87 item 2), run here without Ray: it takes frames from the front of
a frame plan on its own thread and returns the in-process worker's frames, number for number; stopped once "the
actors are up" it takes no more and leaves the plan; a lane that cannot open (a checkpoint that is not there) gives
the frames it took back to the plan, first, and says why."""

from __future__ import annotations

from dataclasses import replace

from cp_debug.data.frames import held_out
from cp_debug.recipes import catalog
from cp_debug.sweep.chunks import ChunkPlan
from cp_debug.sweep.driver_lane import LANE, DriverLane
from cp_debug.sweep.records import SweepSettings

CP = catalog.recipe()
SETTINGS = SweepSettings(("torch", "ort-cpu-fp16"), preset="tiny", level="stage", recipe=CP)


def test_the_lane_returns_the_in_process_frames():
    items = list(enumerate(held_out(5)))
    with SETTINGS.lanes().make_worker(SETTINGS) as worker:
        plain = [r.to_json() for r in worker.run_frames(items)]
        subject = worker.subject
    plan = ChunkPlan(items, [LANE])
    lane, got = DriverLane(SETTINGS, subject, plan), []
    try:
        while len(plan) or lane.busy:  # the driver's loop with no actor
            frames, back = lane.turn(False, 0.2)
            assert lane.error is None and not back, lane.error
            got += frames
    finally:
        lane.close()
    assert sorted((r.to_json() for r in got), key=lambda d: d["index"]) == plain
    told = lane.describe(lane.began)
    assert told["frames"] == 5 and told["error"] is None and 0 <= told["open"] <= told["stopped"]


def test_a_stopped_lane_takes_nothing_more_and_leaves_the_plan():
    plan = ChunkPlan(list(enumerate(held_out(3))), [LANE])
    plan.join(0)
    lane = DriverLane(replace(SETTINGS, checkpoint="/nonexistent/centerpoint.pth"), None, plan)  # opens no worker
    try:
        got, back = lane.turn(True, 0.0)  # the actors are up before it took any frame
    finally:
        lane.close()
    assert got == [] and not back and not lane.busy and lane.frames == 0
    assert plan.workers == [0] and [i for i, _ in plan.items] == [0, 1, 2]


def test_a_lane_that_cannot_open_gives_its_frames_back_first():
    plan = ChunkPlan(list(enumerate(held_out(4))), [LANE])
    plan.join(0)
    taken = plan.next(0)  # an actor's chunk, out meanwhile
    lane = DriverLane(replace(SETTINGS, checkpoint="/nonexistent/centerpoint.pth"), None, plan)
    back = False
    while lane.error is None:
        _, back = lane.turn(False, 0.2)
    lane.close()
    assert "nonexistent" in lane.describe(lane.began)["error"] and lane.frames == 0 and not lane.busy
    assert [i for i, _ in taken] + [i for i, _ in plan.items] == [0, 1, 2, 3] and plan.workers == [0]

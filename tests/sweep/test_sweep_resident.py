"""A sweep lane kept resident (torch tensors from the points to the probes, compared where they lie: what a CUDA lane
does) gives the figures and boxes of the numpy path. Run here on torch CPU tensors."""

from __future__ import annotations

import dataclasses
import math

import pytest

from cp_debug.data.frames import held_out
from cp_debug.recipes import catalog
from cp_debug.sweep.records import SweepSettings
from cp_debug.recipes.centerpoint.sweep.worker import SweepWorker

CP = catalog.recipe()  # the default recipe, CenterPoint (the command line resolves it)

FLOATS = ("rel_rmse", "cosine", "expected_rel_rmse", "noise_ratio")  # sums: float64 summation order apart


@pytest.mark.slow
def test_resident_lanes_give_the_numpy_figures():
    frame = held_out(1)[0]
    with SweepWorker(SweepSettings(("torch", "ort-cpu-fp16"), preset="tiny", level="block", recipe=CP)) as w:
        plain = w.run_frame(0, frame)
        for lane in w._lanes:
            lane.resident = True
        kept = w.run_frame(0, frame)
    assert plain.status != "failed" and kept.status == plain.status
    assert kept.boxes == plain.boxes and kept.candidates[0].detections == plain.candidates[0].detections
    (a,), (b,) = plain.candidates, kept.candidates
    assert (a.outcome, a.diverged, a.reason) == (b.outcome, b.diverged, b.reason)
    assert [p.probe for p in a.probes] == [p.probe for p in b.probes] and len(a.probes) > 5
    for p, q in zip(a.probes, b.probes):
        exact = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name not in FLOATS}
        assert exact == {k: getattr(q, k) for k in exact}, p.probe
        for f in FLOATS:
            x, y = getattr(p, f), getattr(q, f)
            assert x == y or math.isclose(x, y, rel_tol=1e-9) or (math.isnan(x) and math.isnan(y)), (p.probe, f, x, y)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_frames_read_ahead_keep_their_order_and_results():
    """`run_frames` with three frames read ahead on helper threads (what a many-core GPU host does) gives the
    results of reading one at a time, in the frames' order; a frame that cannot be read fails alone."""
    from cp_debug.data.frames import Frame, PointFile

    frames = [*held_out(3), Frame("missing", PointFile("/nonexistent/scan.bin"))]
    items = list(enumerate(frames))
    with SweepWorker(SweepSettings(("torch", "ort"), preset="tiny", level="stage", recipe=CP)) as w:
        one = list(w.run_frames(items, ahead=1))
        three = list(w.run_frames(items, ahead=3))
    assert [r.token for r in three] == [f.token for f in frames] == [r.token for r in one]
    assert [r.status for r in three] == [r.status for r in one] and three[-1].status == "failed"
    assert [r.boxes for r in three[:3]] == [r.boxes for r in one[:3]]


@pytest.mark.gpu
@pytest.mark.needs("cuda", "onnxruntime-gpu")
def test_onnx_runtime_lanes_beside_the_reference_give_the_same_results():
    """On one CUDA device the ONNX Runtime candidates run beside the torch reference (a thread and a stream of their
    own, `SweepSettings.overlap`), every lane takes the frame's voxels and features made ahead on a frame-reading
    thread's stream, and each frame is judged while the next one's reference runs (`run_frames` pipelined): every
    figure, box and verdict is the one of running them after it, each lane making its own, frame by frame
    (deterministic kernels on any stream); frames that fail (unreadable, or no point in range) fail alone, in their
    place."""
    import numpy as np

    from cp_debug.data.frames import Frame, InMemory, PointFile, Scan

    h = held_out(4)
    frames = [h[0], h[1], Frame("missing", PointFile("/nonexistent/scan.bin")), h[2],
              Frame("outside", InMemory(Scan(np.full((50, 5), 500.0, np.float32)))), h[3]]
    results = {}
    for overlap in (False, True):
        settings = SweepSettings(("torch-cuda", "ort-cuda-fp16", "ort-cuda"), preset="demo", level="block",
                                 overlap=overlap, recipe=CP)
        with SweepWorker(settings) as w:
            assert bool(w._beside(w._lanes[0], w._lanes[1:])) == overlap == w._pipelined()
            # with overlap each frame's voxels and features are made on a frame-reading thread's own stream
            results[overlap] = list(w.run_frames(list(enumerate(frames)), ahead=2))
    assert [r.token for r in results[True]] == [f.token for f in frames] == [r.token for r in results[False]]
    for a, b in zip(results[False], results[True]):
        assert (a.status, a.reason, a.boxes) == (b.status, b.reason, b.boxes)
        assert repr(a.candidates) == repr(b.candidates)  # ProbeStat for ProbeStat, bit for bit (repr: NaN == NaN)
    assert [r.status == "failed" for r in results[True]] == [False, False, True, False, True, False]


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_one_front_for_the_lanes_on_a_device_gives_each_lane_s_own_results():
    """With `overlap`, the lanes whose glue runs on one device share the frame's voxels and features, made once
    (`pipeline.make_front`); without it each lane makes its own: every figure, box and verdict is the same. A frame
    whose points all lie outside the range fails alone with the pipeline's reason either way."""
    import numpy as np

    from cp_debug.data.frames import Frame, InMemory, Scan

    frames = [*held_out(2), Frame("outside", InMemory(Scan(np.full((50, 5), 500.0, np.float32))))]
    results = {}
    for overlap in (False, True):
        with SweepWorker(SweepSettings(("torch", "ort-cpu-fp16", "ort"), preset="tiny", level="block",
                                       overlap=overlap, recipe=CP)) as w:
            assert {lane.glue_device() for lane in w._lanes} == {"cpu"}
            results[overlap] = list(w.run_frames(list(enumerate(frames)), ahead=2))
    for a, b in zip(results[False], results[True]):
        assert (a.token, a.status, a.reason, a.boxes) == (b.token, b.status, b.reason, b.boxes)
        assert repr(a.candidates) == repr(b.candidates)
    assert [r.status for r in results[True]][:2] != ["failed"] * 2 and results[True][2].status == "failed"
    assert "point_cloud_range" in results[True][2].reason


def _streamed(w, chunks: list[list], ahead: int) -> list:
    """`w.run_frames` over a `FrameFeed` on a thread, `chunks` put in one at a time, each only once every frame of
    the one before came back (a Ray actor starved between two chunks): the results, in the order handed back."""
    import queue
    import threading

    from cp_debug.sweep.feed import FrameFeed

    feed, got, out = FrameFeed(), queue.SimpleQueue(), []

    def loop() -> None:
        try:
            for r in w.run_frames(feed, ahead=ahead):
                got.put(r)
        finally:
            got.put(None)

    threading.Thread(target=loop, daemon=True).start()
    for chunk in chunks:
        feed.put(chunk)
        for _ in chunk:  # with the feed empty, the loop hands back all it holds before it waits
            r = got.get(timeout=600)  # a guard against a hang, not a race: the frames come back or the test fails
            assert r is not None, "the frame loop ended early"
            out.append(r)
    feed.close()
    assert got.get(timeout=600) is None
    return out


def test_a_feed_runs_chunks_through_one_frame_loop():
    """One `run_frames` over a `FrameFeed` (a Ray actor's loop over all its chunks) gives the results of running the
    frames as one list, in order: each chunk's frames come back before the next chunk is put in, a frame that cannot
    be read fails alone."""
    from cp_debug.data.frames import Frame, PointFile

    frames = [*held_out(3), Frame("missing", PointFile("/nonexistent/scan.bin"))]
    items = list(enumerate(frames))
    with SweepWorker(SweepSettings(("torch", "ort"), preset="tiny", level="stage", recipe=CP)) as w:
        plain = list(w.run_frames(items, ahead=2))
        streamed = _streamed(w, [items[:1], items[1:3], items[3:]], ahead=2)
    assert [r.token for r in streamed] == [f.token for f in frames]
    assert [(r.status, r.reason, r.boxes) for r in streamed] == [(r.status, r.reason, r.boxes) for r in plain]
    assert streamed[-1].status == "failed" and streamed[0].status != "failed"


@pytest.mark.gpu
@pytest.mark.needs("cuda", "onnxruntime-gpu")
def test_a_feed_keeps_the_pipelined_loop_s_results():
    """On a CUDA reference (each frame judged while the next one's reference runs), a `FrameFeed` starved between
    chunks hands back the frame still waiting to be judged before it waits: every figure and verdict is the list's."""
    h = held_out(4)
    items = list(enumerate(h))
    with SweepWorker(SweepSettings(("torch-cuda", "ort-cuda-fp16"), preset="demo", level="block", recipe=CP)) as w:
        assert w._pipelined()
        plain = list(w.run_frames(items, ahead=2))
        streamed = _streamed(w, [items[:1], items[1:3], items[3:]], ahead=2)
    assert [r.token for r in streamed] == [f.token for f in h]
    for a, b in zip(plain, streamed):
        assert (a.status, a.reason, a.boxes) == (b.status, b.reason, b.boxes)
        assert repr(a.candidates) == repr(b.candidates)

"""Shards: a sweep interrupted mid-shard resumes with no frame computed twice and none missing; a frame that
cannot be read or run is `failed` with its reason and the sweep goes on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cp_debug.errors import BadInputError
from cp_debug.recipes import catalog
from cp_debug.sweep.executor import InProcessExecutor
from cp_debug.data.frames import Frame, PointFile, held_out
from cp_debug.sweep.records import SweepSettings
from cp_debug.sweep.shards import ShardStore, plan_shards
from cp_debug.recipes.centerpoint.sweep.worker import SweepWorker

CP = catalog.recipe()  # the default recipe, CenterPoint (the command line resolves it)

SETTINGS = SweepSettings(("torch", "ort"), preset="tiny", level="stage", recipe=CP)


@pytest.fixture(scope="module")
def worker():
    with SweepWorker(SETTINGS) as w:
        yield w


class _Counting:
    """The real worker, counting the frames it computes and interrupted (Ctrl-C) after `stop_after` of them."""

    def __init__(self, worker, stop_after=None):
        self.worker, self.stop_after, self.computed = worker, stop_after, []

    def run_frame(self, index, frame):
        if self.stop_after is not None and len(self.computed) == self.stop_after:
            raise KeyboardInterrupt
        self.computed.append(frame.token)
        return self.worker.run_frame(index, frame)

    def run_frames(self, items):
        for index, frame in items:
            yield self.run_frame(index, frame)


@pytest.mark.long  # a slow end-to-end case (≥ 5 s on 2 idle cores): .ci/run's second step
def test_resume_after_interrupt_computes_each_frame_once(worker, tmp_path):
    frames = held_out(5)
    store = ShardStore(tmp_path)
    store.start(SETTINGS.to_json(), [f.token for f in frames], 3, resume=False)
    first = _Counting(worker, stop_after=4)  # shard 0 (3 frames) whole, shard 1 interrupted after 1 frame
    with pytest.raises(KeyboardInterrupt):
        InProcessExecutor(first).run(store.pending(plan_shards(frames, 3)), store, lambda r: None)
    assert [r.token for r in store.results()] == [f.token for f in frames[:3]]  # the finished shard is readable
    with pytest.raises(BadInputError, match="--resume"):
        store.start(SETTINGS.to_json(), [f.token for f in frames], 3, resume=False)
    with pytest.raises(BadInputError, match="other shard size"):
        store.start(SETTINGS.to_json(), [f.token for f in frames], 2, resume=True)
    store.start(SETTINGS.to_json(), [f.token for f in frames], 3, resume=True)
    second = _Counting(worker)
    InProcessExecutor(second).run(store.pending(plan_shards(frames, 3)), store, lambda r: None)
    assert sorted(first.computed + second.computed) == sorted(f.token for f in frames)
    assert second.computed == [f.token for f in frames[4:]]
    assert [r.token for r in store.results()] == [f.token for f in frames]
    assert not list(store.dir.glob("*.partial.json"))
    # the frames a store kept as it wrote its shards are the ones a fresh store reads from the files
    kept, read = ([json.dumps(r.to_json(), sort_keys=True) for r in s.results()] for s in (store, ShardStore(tmp_path)))
    assert kept == read


def test_a_fresh_sweep_that_kept_no_frame_leaves_nothing_to_resume(worker, tmp_path):
    """`undo_start` takes back what `start` wrote for a fresh sweep where no frame came of it; once a frame is in a
    shard or partial file, everything stays for --resume."""
    frames = held_out(2)
    store = ShardStore(tmp_path)
    assert store.start(SETTINGS.to_json(), [f.token for f in frames], 2, resume=False)
    store.undo_start()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert store.start(SETTINGS.to_json(), [f.token for f in frames], 2, resume=False)  # no --resume asked for
    with pytest.raises(KeyboardInterrupt):  # one frame, in the shard's partial file, then Ctrl-C
        InProcessExecutor(_Counting(worker, stop_after=1)).run(store.pending(plan_shards(frames, 2)), store,
                                                                lambda r: None)
    store.undo_start()
    assert (tmp_path / "manifest.json").is_file() and len(list(store.dir.glob("*.partial.json"))) == 1
    assert not store.start(SETTINGS.to_json(), [f.token for f in frames], 2, resume=True)  # resumed, not fresh


def test_failed_frames_are_recorded_and_the_sweep_goes_on(worker, tmp_path):
    from cp_debug.models.centerpoint.presets import get_preset

    good = held_out(2)
    pts = good[0].load(get_preset("tiny")).points.copy()
    pts[:, 0] += 1000.0  # a scan in the wrong frame: no point inside the range, the pipeline refuses it
    np.save(tmp_path / "far.npy", pts)
    (tmp_path / "broken.bin").write_bytes(b"\x00" * 7)
    frames = [good[0], Frame("broken", PointFile(str(tmp_path / "broken.bin"))),
              Frame("far", PointFile(str(tmp_path / "far.npy"))), good[1]]
    store = ShardStore(tmp_path / "out")
    store.start(SETTINGS.to_json(), [f.token for f in frames], 2, resume=False)
    InProcessExecutor(worker).run(store.pending(plan_shards(frames, 2)), store, lambda r: None)
    by = {r.token: r for r in store.results()}
    assert by["broken"].status == "failed" and by["broken"].reason
    assert by["far"].status == "failed" and "point_cloud_range" in by["far"].reason
    assert by[good[0].token].status != "failed" and by[good[1].token].status != "failed"
    assert by[good[1].token].candidates[0].probes  # the frame after the failures ran in full

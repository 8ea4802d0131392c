"""`cpdebug sweep`: the per-frame divergence of every candidate over a validation set, ranked and explained.

One pass per frame and candidate compares the stage boundaries and the probes of a level with the reference
and diffs the decoded boxes (a worker's frame loop, judged by `judge.py`, into the records of `records.py`); frames
run in shards written whole (`shards.py`) by one executor, in process or on Ray (`executor.py`); frames are ranked
and classed layer-local or uniform (`rank.py`), the worst ones bisected, the metrics computed with bootstrap
intervals (`metrics.py`) and everything written as `sweep.json`, `frames.parquet` and `report.html` (`report.py`,
its verdict line `verdict.py`, the page `report_html.py`, the terminal's table and the JUnit suite `summary.py`).
`session.py` joins the parts.

The worker is the recipe's. A recipe whose frames run through a `FrameModel` (`Recipe.runs_frame_model`) is run by
`staged.py`'s `StagedWorker`; one whose frames run on a pipeline of its own (CenterPoint's pair) brings its lanes and
worker as its `sweep` plug-in (`recipes/<name>/sweep`, reached by `SweepSettings.lanes()`), with these hooks:
- `subject(settings)`: the model of the `SweepSettings` as a bisect `Subject` (its facts go in the report; a Ray
  actor builds it as it warms up);
- `stage_bytes(subject)`: its stage graphs serialized, stage name -> bytes (shipped once to every Ray actor);
- `with_stages(subject, stages)`: the subject with those graphs in place of its own exports;
- `make_worker(settings, onnx_dir=None, subject=None)`: the worker, not yet opened — a context manager whose
  `open()` builds every backend's lane once, with `run_frames(items)` / `run_frame(index, frame)` giving
  `FrameResult`s, `subject` and `cfg` (the interface `StagedWorker` keeps too). `run_frames` reads `items` as it
  goes: a Ray actor runs one loop over a `feed.FrameFeed` for all its chunks, and at a `feed.FLUSH` in it every
  frame read before is handed back before the next item is asked for.
"""

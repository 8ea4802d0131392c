"""`cpdebug sweep` (floor 11): the per-frame divergence of every candidate over a validation set, ranked and explained.

One pass per frame and candidate compares the stage boundaries and the probes of a level with the reference and diffs
the decoded boxes (a worker's frame loop, judged by `judge.py`, into the records of `records.py`); frames run in
shards written whole (`shards.py`) by one executor, in process or on Ray (`executor.py`); frames are ranked and
classed layer-local or uniform (`rank.py`), the worst ones bisected, the metrics computed with bootstrap intervals
(`metrics.py`) and everything written as `sweep.json`, `frames.parquet` and `report.html` (`report.py`, its verdict
line `verdict.py`, the page `report_html.py`, the terminal's table and the JUnit suite `summary.py`). `session.py`
joins the parts.

Module by module: every frame of a set through reference and candidates — the typed records and their JSON
(`records.py`), the recipe's frame loop (its `sweep` plug-in: CenterPoint's lanes and worker, reading ahead and
judging one frame behind, in `recipes/centerpoint/sweep/`; a `FrameModel`'s in `staged.py`), a frame judged
(`judge.py`: probes, boxes, the noise model's verdict) or failed in its place (`failures.py`), shards written whole
and resumed (`shards.py`), in process or on Ray actors (`executor.py`: the actors started and warmed up as soon as
Ray is up, the export — made while Ray starts — shipped once through Ray's object store; the actor itself in
`actor.py`, one frame loop an actor over all its chunks, `feed.py`; numba's kernels and ONNX Runtime's CUDA provider
warmed beside the model's build, `warm.py`; in the server, the cluster and actors kept for the next sweep,
`kept.py`), the frames handed to the actors in chunks sized by each one's measured speed and gathered back into the
shards (`chunks.py`), ranking and local/uniform classes (`rank.py`), the worst frames bisected on their in-memory
scans (`explain.py`), mAP/NDS (the devkit's; on a host with cores to spare each frame matched in processes while the
frames run and each lane summed up after the last, `devkit_lanes.py` over `eval/devkit_stream.py`, the devkit's
`accumulate` cut at the sample) and bootstrap AP intervals (`metrics.py`, `bootstrap.py`: a large pair's resamples
cut into runs across the pool), what `--budget` limits of it (`budget.py`), sweep.json (`cp_debug.sweep/2`,
`report.py`) and frames.parquet (`frames_file.py`, made beside the metrics), the verdict line (`verdict.py`),
report.html (`report_html.py`), the terminal's table and the JUnit suite (`summary.py`), the Rerun recording
(`rerun.py`); any one-graph model's samples through the same shards, ranking, bisects and summary (`samples.py`,
each sample's shapes and the samples grouped by them in sweep.json's `by_shape`); a declared shape range of an ONNX
file's dynamic axes searched for each candidate's first failing shape (`shape_range/`: `--min-shapes` /
`--max-shapes`, the pure search, the judge of a shape, the table).

The worker is the recipe's. A recipe whose frames run through a `FrameModel` (`Recipe.runs_frame_model`) is run by
`staged.py`'s `StagedWorker`; one whose frames run on a pipeline of its own (CenterPoint's pair) brings its lanes and
worker as its `sweep` plug-in (`recipes/<name>/sweep`, reached by `SweepSettings.lanes()`), with these hooks:
- `subject(settings)`: the model of the `SweepSettings` as a bisect `Subject` (its facts go in the report; a Ray
  actor builds it as it warms up);
- `stage_bytes(subject)`: its stage graphs serialized, stage name -> bytes (shipped once to every Ray actor);
- `with_stages(subject, stages)`: the subject with those graphs in place of its own exports;
- `make_worker(settings, onnx_dir=None, subject=None)`: the worker, not yet opened — a context manager whose `open()`
  builds every backend's lane once, with `run_frames(items)` / `run_frame(index, frame)` giving `FrameResult`s,
  `subject` and `cfg` (the interface `StagedWorker` keeps too). `run_frames` reads `items` as it goes: a Ray actor
  runs one loop over a `feed.FrameFeed` for all its chunks, and at a `feed.FLUSH` in it every frame read before is
  handed back before the next item is asked for.

One sweep frame, package by package: `data/frames.Frame` (a token and its source; nothing loaded) listed in the
manifest by `sweep/shards.py` → `sweep/executor.py` (in process, or a Ray actor) → the recipe's sweep plug-in
(`SweepSettings.lanes()`; CenterPoint's: `recipes/centerpoint/sweep/worker.SweepWorker.run_frames`) reads it ahead on
a helper thread (`Frame.load(cfg)` → a `Scan`'s points; on CUDA `recipes/centerpoint/pipeline.make_front`: voxels and
features once for every lane) → each lane (`recipes/centerpoint/sweep/lanes.run_lane`:
`recipes/centerpoint/pipeline.run_pipeline` with the lane's stage runners from `backends/`, probes read through
`lanes.Tap`) → judged one frame behind (`sweep/judge.py`: `compare_values` over `compare/` — numba on the host, one
Triton pass per probe on CUDA —, the boxes matched by `lidar/compare_detections.py`, `judge_frame` by
`compare/noise.py`'s three words) or failed in its place (`sweep/failures.py`) → a `sweep/records.FrameResult` →
written whole into its shard (`files.py`) → over the frames: `rank.py` (classes), `explain.py` (the worst bisected by
`bisect/engine.py`), `metrics.py` (`eval/devkit.py`) → `report.py` (sweep.json, frames.parquet), `verdict.py`,
`report_html.py`, `summary.py` (the table, JUnit) → the exit code of the worst word.

The flow of one `cpdebug sweep` (issue 22):
1. `cli/sweep_cmd.py` → `sweep/session.py`: frames from `data/frames.py` (an info file, a folder of point files, a
   rosbag2 folder or held-out synthetic seeds; a frame is only a path or a seed, loaded when its turn comes);
   `shards.py` writes `DIR/manifest.json` (settings, tokens, shard size) or, with `--resume`, checks it and lists
   what is left.
2. One `SweepWorker` (`worker.py`) per process; its lanes (`lanes.py`: `make_lane`) build every backend's two stage
   runners once, with the probes of `--level` exposed (torch hooks; ORT extra outputs through the subject's probe
   map; `SPEC@DIR` runs a deployed folder's two ONNX files). Per frame: the reference, then each candidate on its own
   upstream values; each probe and stage boundary becomes a `ProbeStat` (scalars only), the boxes a `DetectionDelta`
   (by class, by distance bucket, with each matched box's turn and the conditioning of its yaw), judged by `judge.py`
   (`judge_frame`: the noise model's word); the typed records are `records.py`'s; a frame that fails is a `failed`
   result with its reason (`failures.py`).
3. `executor.py` runs the shards: `InProcessExecutor` (partial shard file after every frame) or `RayExecutor` (Ray
   Core actors, `max_restarts=-1, max_task_retries=-1`, warming up as soon as Ray is up, the export made while Ray
   starts, `ray.put` once and opened by each actor; frames fed in chunks by `chunks.ChunkPlan` — a share of what is
   left sized by each actor's measured frames/s (over its latest chunks, back to 4 s of them), at most 4 s of its
   work, single frames at the end, two chunks queued per actor — and gathered into the planned shards by
   `chunks.ShardFill`: a killed actor's chunk runs again on its restarted process; the driver keeps each frame once
   and writes each shard once; on `--ray local` the driver runs chunks of the same plan in its own process, on the
   export it made, until every actor has its sessions open: `driver_lane.py`). An actor runs one frame loop for its
   life (`feed.FrameFeed`): a threaded actor whose `run_chunk` calls put their frames into the loop's feed and wait
   for them, so the next chunk's frames are read ahead and the device stays busy across a chunk's end; where the feed
   runs dry it yields `FLUSH` and the worker hands back the frame it was still to judge (the actor:
   `actor.ActorBody`). Threads are fixed per worker, so both give the same numbers. sweep.json's `settings.executor`
   says where a Ray run's seconds went: `frames_seconds` (first chunk out → last back), `sessions_seconds` (of it,
   before the first actor's sessions were open) and `timeline` (seconds from the frames phase's start at which Ray
   was asked for and was up, and each actor began, imported torch, built its model, opened CUDA and Triton, was warm,
   had the export and had its sessions open), `driver_lane` the frames the driver ran itself and when its sessions
   were open and it stopped, `actor_work` each actor's frames, its chunks (how many, the longest) and their own
   seconds (in the actor, the queue left out: its frames/s when busy, to set beside the wall's),
   `driver_busy_seconds` the driver's seconds taking chunks back, and `workers_kept` whether the actors were those a
   sweep before left in the server (`kept.py`: in `cpdebug serve`, the `--ray local` cluster, its actors with their
   sessions open and the metrics' process pool outlive a sweep, each under a key of what it was made from — the
   environment and folder, the settings, the user's files' stamps, the export's digest, the placement —, and the next
   sweep takes them only under its own key; `dispatch.Dispatch` is one run's hand-out, `placement.py` how many actors
   with how many CPUs).

   Ray Core, not Ray Data (issue 71). Ray Data's `map_batches` on an `ActorPoolStrategy` pool gives streaming,
   backpressure, autoscaling and task retries for free, and is Ray's own answer to batch inference; we weighed it and
   kept the hand-made queue on Ray Core because (a) a sweep's input is a list of tokens (a seed, a path), not data:
   each actor reads its frames itself, ahead, on its own threads, so Ray Data's block reading, batching and
   object-store traffic carry nothing here; (b) the results must land in the resumable shard files of the plan in the
   manifest, each frame once, in an order `--resume` trusts — with Ray Data that means draining its output iterator
   on the driver and writing the same shards anyway, and its retries are at-least-once per block; (c) the tail: Ray
   Data's batches have one `batch_size` (and a GPU `map_batches` requires one), so the last batches leave workers
   idle, while the chunks here shrink to single frames sized by each actor's measured speed; (d) the actor's warm-up
   while the driver exports, the export shipped once with `ray.put`, and the in-process path running the very same
   `SweepWorker` frame loop stay a few lines of Ray Core, while Ray Data brings its own streaming executor, CPU
   reservations for its operators (with the actors of the GPUs holding the host's CPUs, its read and output tasks
   compete for the same cores; on the 2-core CPU machine they would starve) and a pandas/pyarrow dataset layer to its
   start. What we give up: autoscaling the pool and Ray Data's dashboards; neither is wanted for a fixed set of GPUs.
   The chunk sizes are our code, the scheduling, placement and retries stay Ray's.
4. `rank.py` puts each probe's error next to its median over frames: ≥ 10× somewhere = layer-local (named at the
   onset), else uniform; frames ranked by boxes lost/added, then the worst ratio. `explain.py` bisects the K worst
   frames (`bisect/engine.py`; each a `BisectReport`, or a `FrameFailure` with its reason) and counts root causes;
   `metrics.py` gives mAP/NDS (`eval/devkit.py`) and bootstrap intervals of the AP change per class × distance bucket
   and along the backend chain (`bootstrap.py`: a resample's AP is that of its multiset of frames, equal scores in
   frame order); on a host with cores to spare both go to a process pool started with the sweep — the devkit's
   matching of each frame as it comes back (`devkit_lanes.py`: `eval/devkit_stream.py`, the devkit's `accumulate` cut
   at the sample, each lane summed up after the last frame, bit for bit what `accumulate` gives), and the bootstrap's
   (lane, key) pairs, a large one's resamples cut into runs; the greedy matching both share (each detection in score
   order takes the nearest box not taken) is one compiled kernel, `eval/greedy.py`; `report.py` writes `sweep.json`
   (`cp_debug.sweep/2`: a frame's `status` is its word — within_precision, degraded, diverged — or failed) and
   `frames.parquet` (made by `frames_file.py` on a helper thread beside the metrics), `verdict.py` the verdict line,
   `report_html.py` report.html, `summary.py` the terminal table and the JUnit suite; the exit code follows the words
   (0, 4, 1).
"""

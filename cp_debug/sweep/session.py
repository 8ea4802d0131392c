"""One sweep: frames, shards (fresh or resumed), the executor, ranking, the bisect of the worst frames, the
metrics, and the files of `--out`.

Checks that can fail fast (backend specs, the frames, the out folder's manifest) run before any model is built.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ContextManager

from cp_debug.errors import BadInputError
from cp_debug.data.frames import Frame, from_scenes, held_out
from cp_debug.lidar.record import ModelRecord
from cp_debug.sweep.rank import LOCAL_FACTOR, RankedFrame, rank_frames
from cp_debug.sweep.records import FrameResult, SweepSettings
from cp_debug.sweep.shards import ShardStore, plan_shards

if TYPE_CHECKING:
    from cp_debug.bisect.result import BisectReport
    from cp_debug.sweep.explain import FrameFailure

# progress(description, total) -> context manager yielding advance(n=1, **fields)
ProgressFactory = Callable[[str, int], ContextManager[Callable[..., None]]]


@contextlib.contextmanager
def _no_progress(description: str, total: int):
    yield lambda n=1, **fields: None


@dataclass(frozen=True)
class SweepOptions:
    settings: SweepSettings
    out: Path
    scenes: Path | None = None
    data_root: Path | None = None  # what the info file's relative lidar paths are joined to (default: its folder)
    n: int = 20
    shard_size: int = 8
    resume: bool = False
    bisect_top: int = 3
    ray: str | None = None  # None: in process; "auto" or an address: Ray
    ray_workers: int | None = None
    ray_cpus_per_worker: int | None = None  # None: the cluster's CPUs shared out between the actors
    bootstrap: int = 200
    factor: float = LOCAL_FACTOR
    model_record: ModelRecord | None = None  # the model as the user named it, stored in sweep.json
    lidar_topic: str | None = None  # --scenes BAG: the PointCloud2 topic (default Autoware's)
    runs_on: dict | None = None  # what the command runs on (the CLI's record), in each frame's bisect report too


@dataclass
class SweepOutcome:
    results: list[FrameResult]
    ranked: list[RankedFrame]
    spreads: dict
    bisects: dict[str, BisectReport | FrameFailure] = field(default_factory=dict)  # token -> the frame's bisect
    metrics: dict | None = None
    model: dict = field(default_factory=dict)
    executor: dict = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    opts: SweepOptions | None = None  # as run (threads fixed)
    frames_file: object | None = None  # frames.parquet being made beside the metrics (`frames_file.FramesFile`)

    @property
    def any_diverged(self) -> bool:
        return any(r.status != "within_precision" for r in self.results)

    @property
    def outcome(self):
        """The run's outcome (compare/noise.Outcome): the worst frame's; a failed frame counts as diverged."""
        from cp_debug.compare.noise import Outcome, worst

        if any(r.status == "failed" for r in self.ranked):
            return Outcome.DIVERGED
        return worst(r.outcome for r in self.ranked if r.outcome is not None)


def check_backends(labels: tuple[str, ...]) -> None:
    from cp_debug.backends.factory import check_available
    from cp_debug.backends.spec import REF_CANDIDATES, parse_backends

    specs = [spec for _, spec in parse_backends(",".join(labels), rule=REF_CANDIDATES)]
    if specs[0].onnx_dir is not None:
        raise BadInputError(f"the reference {labels[0]!r} cannot be a deployed folder: put it among the candidates")
    for spec in specs:
        check_available(spec)


def select_frames(opts: SweepOptions) -> list[Frame]:
    from cp_debug.backends.kit.kit_files import frames_of_kits
    from cp_debug.backends.spec import BackendSpec
    cfg = opts.settings.config()
    kit = frames_of_kits([BackendSpec.parse(b) for b in opts.settings.backends], "--scenes" if opts.scenes else None)
    if kit is not None:  # a trt-*@KIT candidate: the frames the target ran
        return kit
    if opts.scenes is None:
        return held_out(opts.n)
    return from_scenes(opts.scenes, cfg, opts.data_root, lidar_topic=opts.lidar_topic, task="sweep")


def _check_run(opts: SweepOptions) -> bool:
    """What can be wrong with the run, said before anything is written; whether its recipe runs a `FrameModel`."""
    s = opts.settings
    check_backends(s.backends)  # a bad CPDEBUG_CUDA_SYNC too, for a lane on CUDA (`check_available`)
    if opts.bisect_top < 0:
        raise BadInputError(f"--bisect-top {opts.bisect_top}: give 0 (no bisect) or more")
    staged = s.recipe.runs_frame_model
    if staged:
        from cp_debug.sweep.staged import check_specs

        check_specs(s)
        if opts.ray is not None:
            raise BadInputError(f"--ray is not built for --recipe {s.recipe.name} yet: run in process")
    return staged


def run_sweep(opts: SweepOptions, progress: ProgressFactory = _no_progress,
              step: Callable[[str], ContextManager] | None = None) -> SweepOutcome:
    """Run (or resume) the sweep of `opts` and rank it; files of `opts.out` are written by `report.write_all`."""
    from cp_debug.sweep.metrics import MetricsAhead

    step = step or (lambda text: contextlib.nullcontext())
    if opts.settings.threads is None:
        from cp_debug.parallel import thread_count

        opts = replace(opts, settings=replace(opts.settings, threads=thread_count()))
    s = opts.settings
    staged = _check_run(opts)
    frames = select_frames(opts)
    store = ShardStore(opts.out)
    fresh = store.start({**s.to_json(), "scenes": str(opts.scenes) if opts.scenes else None},
                        [f.token for f in frames], opts.shard_size, opts.resume)
    tasks = store.pending(plan_shards(frames, opts.shard_size))
    t0 = time.perf_counter()
    ahead = MetricsAhead(s)  # the metrics' per-frame work and imports, while the frames run
    try:
        try:
            model, describe = _run_frames(opts, staged, frames, tasks, store, ahead, progress, step)
        except BaseException:
            if fresh:
                store.undo_start()  # where no frame was kept: nothing half-written, nothing to --resume
            raise
        results = store.results()
        if len(results) != len(frames) or {r.token for r in results} != {f.token for f in frames}:
            raise BadInputError(f"{opts.out}: the shards hold {len(results)} frames of {len(frames)}; --resume to "
                                "finish")
        ranked, spread = rank_frames(results, opts.factor, s.tolerance_mode)
        outcome = SweepOutcome(results, ranked, spread, model=model, executor=describe,
                               seconds=time.perf_counter() - t0, opts=opts)
        if opts.bisect_top:
            from cp_debug.sweep.explain import bisect_worst

            outcome.bisects, outcome.ranked = bisect_worst(opts, outcome.ranked, frames, step)
        from cp_debug.sweep.frames_file import FramesFile
        from cp_debug.sweep.metrics import sweep_metrics

        outcome.frames_file = FramesFile(outcome)  # the frames' file made meanwhile: the ranks are final
        with step("metrics over the set (nuscenes-devkit, bootstrap intervals)"):
            outcome.metrics = sweep_metrics(results, s, opts.bootstrap, ahead)
        return outcome
    finally:
        ahead.close()


def _run_frames(opts: SweepOptions, staged: bool, frames: list, tasks: list, store: ShardStore, ahead,
                progress: ProgressFactory, step) -> tuple[dict, dict]:
    """Every pending shard through the executor (in process, or Ray actors); (the model's record, the executor's
    description). Each returned frame goes to `ahead` too."""
    from cp_debug.sweep.executor import InProcessExecutor, RayExecutor
    from cp_debug.sweep.staged import StagedWorker

    s = opts.settings
    already = len(frames) - sum(len(t.todo) for t in tasks)
    worker = executor = None
    try:
        if not tasks:  # `--resume` of a sweep whose frames are all in their shards: no sessions, no Ray to start
            with step("loading the model (every frame is in its shard already)"):
                subject = _subject(s, staged)
            return _model_record(s, subject), {"kind": "none: every frame was in its shard already", "workers": 0}
        if opts.ray is None:
            with step("building every backend's sessions (once)"):
                from cp_debug.sweep.warm import warming

                warming(s)  # numba's kernels, ONNX Runtime's CUDA provider: loaded beside the model and sessions
                worker = (StagedWorker(s) if staged else s.lanes().make_worker(s)).open()
            executor = InProcessExecutor(worker)
            subject = worker.subject
        else:
            executor = RayExecutor(s, address=opts.ray, workers=opts.ray_workers,
                                   cpus_per_worker=opts.ray_cpus_per_worker)
            subject = _start_ray(executor, step, tasks)
        ahead.begin()  # the devkit's import, once the start's own are done (issue 87: never beside Ray's)
        with progress("frames", len(frames)) as advance:
            advance(already)
            counts = Counter()

            def on_frame(r: FrameResult) -> None:
                ahead.add(r)
                counts[r.status] += 1
                advance(1, degraded=counts["degraded"], diverged=counts["diverged"], failed=counts["failed"])

            executor.run(tasks, store, on_frame, ahead.put)
        return _model_record(s, subject), executor.describe()
    finally:
        if worker is not None:
            worker.close()
        if isinstance(executor, RayExecutor):
            executor.close()


def _subject(s: SweepSettings, staged: bool):
    """The model's subject alone (what sweep.json's model record reads), without sessions."""
    if staged:
        return s.recipe.make_frame_model(s.preset, s.checkpoint, s.seed, s.random_weights).subject
    return s.lanes().subject(s)


def _model_record(s: SweepSettings, subject) -> dict:
    return {"recipe": s.recipe.name, "preset": s.preset, "weights": subject.facts.weights, "checkpoint": s.checkpoint,
            "random_weights": s.random_weights, "int8": s.int8_dir, "level": s.level}


def _start_ray(executor, step, tasks):
    """Ray and its actors started (each warming up in its process) while a helper thread builds the model and exports
    its two stages, which are then shipped to them once through Ray's object store; the subject. On `--ray local` the
    driver's lane begins on `tasks`' frames as soon as the export is done (`driver_lane.py`)."""
    from concurrent.futures import ThreadPoolExecutor

    lanes = executor.settings.lanes()

    def export():
        subject = lanes.subject(executor.settings)
        stages = lanes.stage_bytes(subject)
        executor.start_lane(subject, tasks)  # frames in this process while Ray and its actors start
        return subject, stages

    if executor.held_ready():  # Ray kept up by the server's sweep before (`kept.py`), its workers maybe too
        with step("taking the Ray cluster and workers the sweep before left in the server"):
            executor.start()
    with ThreadPoolExecutor(1, thread_name_prefix="cpdebug-export") as pool:
        exporting = pool.submit(export)
        if not executor.actors:
            with step("starting Ray and its workers (the two ONNX stages exported meanwhile)"):
                executor.start()  # Ray's own start wants the main thread
        with step("exporting the two ONNX stages (once, for every Ray worker)"):
            subject, stages = exporting.result()
        executor.ship(stages)
    return subject

"""Who runs the shards: `InProcessExecutor` (the embedded default, one local worker) or `RayExecutor` (Ray Core
actors, two a GPU for CUDA backends (`actors_for`) or one per group of CPUs, each building its sessions once). One
interface: `run(tasks, store, on_frame)` runs every pending shard and writes each through the `ShardStore` as it
finishes.

Ray is imported only by `RayExecutor` (through `ray_module`). Its actors (`actor.ActorBody`), as many as the cluster
holds (`actors_for`), are started as soon as Ray is (`start`: each warms up — imports, the model's modules, the
comparison kernels, CUDA —; the driver exports while Ray starts), get the export once
through Ray's object store (`ship`), and are fed chunks of frames sized by their measured speed
(`chunks.ChunkPlan`), two queued on each so none waits for the driver. The actors are declared with
`max_restarts=-1, max_task_retries=-1`: a worker process killed mid-chunk is restarted by Ray and the chunk's call
runs again on it; the driver keeps each frame once, from the call's result, and writes a shard once all its frames
are back, so nothing is lost or counted twice. In the server (`cpdebug serve`), a `--ray local` cluster and its
actors, their sessions open, outlive the sweep for the next one of the same settings and export (`kept.py`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from typing import Any, Callable

from cp_debug.errors import BadInputError
from cp_debug.sweep import kept
from cp_debug.sweep.actor import DEPTH, ActorBody, peak_memory
from cp_debug.sweep.chunks import ChunkPlan
from cp_debug.sweep.dispatch import Dispatch
from cp_debug.sweep.driver_lane import LANE, NO_LANE, DriverLane
from cp_debug.sweep.placement import actors_for, gpu_share, mps_running
from cp_debug.sweep.records import FrameResult, SweepSettings
from cp_debug.sweep.shards import ShardStore, ShardTask, frame_text
from cp_debug.sweep.ship import Shipping

OnFrame = Callable[[FrameResult], None]
OnTables = Callable[[str, dict], None]  # token, the frame's metrics tables (`metrics.frame_tables`)

RAY_HINT = "--ray needs Ray: pip install 'cp-debug[ray]' (ray>=2.40)"
LANE_WAIT = 0.05  # seconds the driver waits on Ray's results, or on its own lane's, while both may bring frames


class InProcessExecutor:
    """Every shard in this process through one worker (built once); the partial file follows each frame (with
    `partial_every`, at most once in that many seconds: a killed sweep loses at most that much work). The
    frames of all shards are one stream, so the worker's read-ahead runs on across shard boundaries, and the shard
    files are written (fsync'd) on a helper thread while the next frame runs, one write at a time, in order."""

    def __init__(self, worker: Any, partial_every: float = 0.0):
        self.worker = worker
        self.partial_every = partial_every  # seconds between two writes of a partial file (0: after every frame)

    def run(self, tasks: list[ShardTask], store: ShardStore, on_frame: OnFrame, on_tables: OnTables | None = None
            ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        began, self.began_at = time.perf_counter(), time.time()
        shard_of = {i: task for task in tasks for i, _ in task.todo}
        written = time.monotonic()
        results = {task.index: list(task.done) for task in tasks}
        rendered: dict[int, str] = {}  # the running shard's frames, each rendered to JSON once
        with ThreadPoolExecutor(1, thread_name_prefix="cpdebug-shard") as writer:
            last = None

            def write(index: int, got: list[FrameResult], partial: bool) -> None:
                nonlocal last
                if last is not None:
                    last.result()  # the previous write is done (its error, if any, raised here)
                last = writer.submit(store.write, index, list(got), partial, dict(rendered))

            for task in tasks:
                if not task.todo:  # finished by its partial file
                    write(task.index, sorted(results.pop(task.index), key=lambda r: r.index), False)
            for r in self.worker.run_frames(_items(tasks)):
                task = shard_of[r.index]
                got = results[task.index]
                got.append(r)
                rendered[r.index] = frame_text(r)
                on_frame(r)
                if len(got) < len(task.frames):
                    if time.monotonic() - written >= self.partial_every:
                        write(task.index, got, True)
                        written = time.monotonic()
                    continue
                write(task.index, sorted(got, key=lambda r: r.index), False)
                for done in results.pop(task.index):
                    rendered.pop(done.index, None)
            if last is not None:
                last.result()
        self.frames_seconds, self.peak = time.perf_counter() - began, peak_memory()

    def describe(self) -> dict:
        return {"kind": "in-process", "workers": 1, "frames_seconds": getattr(self, "frames_seconds", None),
                "frames_began": getattr(self, "began_at", None), "peak_memory": [getattr(self, "peak", None)]}


_SHUTTING_DOWN = None  # the thread shutting down the Ray an earlier `RayExecutor.close` started (None: none)

class RayExecutor:
    """Shards on a Ray cluster, `address` as Ray's `ray.init` means it (`sweep --ray`'s help says it to users):
    "local" starts one on this machine with every CPU and GPU it has (shut down again in `close`), "auto" joins the
    running one, else an address; a Ray already initialised in this process (a test's `ray.init(num_cpus=2)`) is
    used as it is. `workers`: actors to start (default: `actors_for`'s, two a GPU for CUDA backends, else the
    cluster's CPUs / `cpus_per_worker`). `cpus_per_worker`: the CPUs (and threads) each actor gets (default: the
    cluster's CPUs shared out between the actors, so a GPU actor is not held to one thread while the in-process sweep
    has all).
    `start` the actors first (they warm up meanwhile), `ship` them the export, then `run`."""

    def __init__(self, settings: SweepSettings, address: str = "auto", workers: int | None = None,
                 cpus_per_worker: int | None = None):
        self.settings, self.address = settings, address
        self.workers, self.cpus = workers, cpus_per_worker
        self.actors: list = []
        self.stages: list = []  # [the ObjectRef of the export], once shipped
        self.opening: list = []  # the actors' `open` calls (`ship`): the first one back starts the frames proper
        self.figures: dict = {}  # what `describe` tells of the run: seconds, chunks, each worker's peak memory
        self.shipping: Shipping | None = None  # what goes to actors on other hosts (`start`)
        self._made: tuple = ()  # (actors, CPUs each, passive, CUDA sync, Ray's resources for each): `start`'s
        self.lane: DriverLane | None = None  # frames run in this process until the actors are up (`start_lane`)
        self._started = False  # this executor started Ray in this process (and shuts it down), or took it kept
        self._kept: kept.RayWorkers | None = None  # actors an earlier sweep of this process left (`kept.py`)
        self._key = None  # what this run's actors would be kept under (`start`); None: they are not kept
        self._clean = False  # `run` ended with every frame back: its actors may be kept for the next sweep
        self._digest: str | None = None  # the export's digest (`ship`), where the actors may be kept
        self._opened: dict = {}  # actor -> its `open` answer
        self._ray_env: tuple | None = None  # (environment, folder) the cluster is kept under, in the server
        self._epochs: dict[str, float] = {}  # when (time.time) Ray was asked for, was up, the frames phase began
    def _ray(self):
        before = dict(os.environ) if "ray" not in sys.modules else None
        ray = ray_module()
        if before is not None:  # what importing Ray set in this process (RAY_CLIENT_MODE): out of the kept keys
            kept.ray_set(before)
        if _SHUTTING_DOWN is not None:
            _SHUTTING_DOWN.join()  # an earlier sweep's cluster is gone before this one starts
        if not self._started and self.address == "local" and kept.keeping():
            # the cluster an earlier sweep of this server started, where it was started as this one would be (else
            # it is shut down here, and a new one started); the key read before Ray's start adds its own variables
            self._ray_env = (dict(os.environ), os.getcwd())
            self._started = kept.take("ray", kept.ray_key(self.address, *self._ray_env)) is not None
        elif not self._started and "ray" in kept.held():  # another cluster asked for: the kept one goes first
            kept.release_all()
        if not ray.is_initialized():
            try:
                # a cluster of our own: its workers at the user's priority, as the in-process sweep runs (Ray's
                # default niceness of 15 lets any other process on the host starve the actors), and no idle worker
                # started a CPU for the driver (the actors get processes of their own; the CPU machine's
                # `ray.init` 3.4 s against 4.3-4.5 s, the actor ready 0.2-0.4 s later: 0.6 s less in all)
                own = ({"_system_config": {"worker_niceness": 0, "prestart_worker_first_driver": False}}
                       if self.address == "local" else {})
                before = dict(os.environ)
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False,
                         configure_logging=False, **own)
                kept.ray_set(before)
            except (ConnectionError, RuntimeError, ValueError) as err:
                if self.address == "auto":
                    raise BadInputError("no running Ray cluster found: start one with `ray start --head`, or use "
                                        "--ray local for a cluster on this machine") from None
                raise BadInputError(f"--ray {self.address}: no Ray cluster reached ({str(err).splitlines()[0][:160]}); "
                                    "give ray://HOST:10001 (Ray Client) or HOST:6379 (the head), 'auto' for the "
                                    "cluster running here, or 'local' for a new one on this machine") from None
            self._started = True
        return ray

    def start(self) -> list:
        """The actors, started (each warms up in its own process while the caller goes on: `ship`, then `run`)."""
        from cp_debug.cuda_driver import sync_mode

        self._epochs["start"] = time.time()
        cuda = self.settings.on_cuda()
        sync = sync_mode() if cuda else None  # a bad CPDEBUG_CUDA_SYNC said before Ray starts
        ray = self._ray()
        self._epochs["ray"] = time.time()
        res = ray.cluster_resources()
        total = max(1, int(res.get("CPU", 1)))
        n, cpus = actors_for(res, cuda, self.workers, self.cpus, mps=cuda and mps_running())
        passive = n * max(cpus, self.settings.threads or 1) > total  # more threads than the cluster's CPUs
        share = gpu_share(int(res.get("GPU", 0)), n) if cuda else 0.0
        self.figures.update(cpus_per_worker=cpus, cluster_cpus=total,
                            **({"gpu_share": share, "cuda_sync": sync} if cuda else {}))
        if self._started and kept.keeping():
            self._key = kept.workers_key(self.settings, res, n, cpus, passive, share, sync)
            self._kept = kept.take("ray-workers", self._key)
        self._made = (n, cpus, passive, sync, {"num_gpus": share, "num_cpus": cpus} if cuda else {"num_cpus": cpus})
        if self._kept is not None:  # up, with their sessions open: `ship` checks they hold this sweep's export
            self.actors, self.shipping = self._kept.actors, self._kept.shipping
            return self.actors
        self.actors = self._new_actors(ray)
        return self.actors

    def _new_actors(self, ray) -> list:
        """The actors `start` settled on (`_made`), started, with the shipping of their files."""
        n, cpus, passive, sync, opts = self._made
        actor = ray.remote(max_restarts=-1, max_task_retries=-1, max_concurrency=DEPTH + 1, **opts)(ActorBody)
        self.shipping = Shipping(ray, self.settings, client=_through_client(ray))
        return [actor.remote(self.settings, cpus, passive, self.shipping.shipment, sync) for _ in range(n)]

    def held_ready(self) -> bool:
        """Whether Ray is up already, kept by an earlier sweep of this server (`kept.py`): `start` then takes no
        time, and is called before the export, so that the driver's lane does not start beside kept actors."""
        return self.address == "local" and kept.keeping() and kept.holds("ray", kept.ray_key(
            self.address, dict(os.environ), os.getcwd()))

    def ship(self, stages: dict[str, bytes]) -> None:
        """The export (the plug-in's `stage_bytes`) put once into Ray's object store, whichever node each actor runs
        on; every actor opens its sessions on it as soon as its warm-up is done."""
        ray = self._ray()
        self._digest = kept.stages_digest(stages) if self._key is not None else None
        if self._kept is not None:
            if self._kept.digest == self._digest:  # their sessions are open on these very bytes (or opening)
                self.stages, self.opening = self._kept.stages, self._kept.opening
                return
            # the same settings, another export (a checkpoint written anew within its timestamp): new actors
            self.actors, self.shipping = [], None
            kept.let_go_workers(self._kept)
            self._kept = None
            self.actors = self._new_actors(ray)
        self.stages = [ray.put(stages)]
        self.opening = [a.open.remote(self.stages) for a in self.actors]

    def start_lane(self, subject, tasks: list[ShardTask]) -> None:
        """Frames of `tasks` run in this process on `subject` (the export the actors get), from now until every actor
        has its sessions open (`driver_lane.py`), where the cluster is this machine's own (`--ray local`): its CPUs
        and cards are the driver's; and threadpoolctl is installed (`cp-debug[ray]`). Called as soon as the export
        is done, Ray still starting."""
        import importlib.util

        if self.address == "local" and self.lane is None and self._kept is None \
                and importlib.util.find_spec("threadpoolctl") is not None:
            self.lane = DriverLane(self.settings, subject, ChunkPlan(_items(tasks), [LANE]))

    def run(self, tasks: list[ShardTask], store: ShardStore, on_frame: OnFrame, on_tables: OnTables | None = None
            ) -> None:
        """Every pending frame through the actors in chunks (`ChunkPlan`, `DEPTH` queued on each); each shard written
        (on a helper thread, in order) once all its frames are back; on an error, the shards begun are written as
        partial files for `--resume`. `on_tables`: each frame's metrics tables, as the actor worked them out."""
        from concurrent.futures import ThreadPoolExecutor

        ray = self._ray()
        if not self.actors:
            self.start()
        if not self.stages:
            lanes = self.settings.lanes()
            self.ship(lanes.stage_bytes(lanes.subject(self.settings)))
        lane = self.lane or NO_LANE
        began, sessions = time.perf_counter(), None
        self._epochs["frames"] = time.time()
        timelines = dict(self._kept.opened) if self._kept is not None else {}  # actor -> its `open` answer
        opening = [ref for i, ref in enumerate(self.opening) if i not in timelines]
        if self.opening and not opening:  # kept by the sweep before with their sessions open
            sessions = 0.0
        with ThreadPoolExecutor(1, thread_name_prefix="cpdebug-shard") as writer:
            plan = self.lane.plan if self.lane is not None else ChunkPlan(_items(tasks), [])  # the lane's, begun
            plan.join(*range(len(self.actors)))
            d = Dispatch(self, tasks, plan, lambda *a: writer.submit(store.write, *a), on_frame, on_tables)
            try:
                d.feed_all()
                while d.running or lane.busy:
                    # the driver's own frames (`driver_lane.py`), until every actor is up
                    got, back = lane.turn(not opening, 0.0 if d.running else LANE_WAIT)
                    for r in got:
                        d.returned(r, {})
                    if back:
                        d.feed_all()
                    if not d.running:
                        continue
                    ready, _ = ray.wait([*d.running, *opening], num_returns=1,
                                        timeout=LANE_WAIT if lane.waiting else None)  # a short wait while it runs
                    if ready and ready[0] not in d.running:  # an actor's sessions are open (or failed: its
                        # chunks say so)
                        answer = timelines[actor := self.opening.index(ready[0])] = _opened(ray, ready[0])
                        self.shipping.placed(actor, answer.get("node") if answer else None)
                        opening.remove(ready[0])
                        sessions = time.perf_counter() - began if sessions is None else sessions
                    elif ready:
                        d.chunk_back(ray, ready[0])
                for w in d.writes:
                    w.result()
                self._clean, self._opened = True, timelines
            except BaseException:
                for ref in d.running:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref)
                for index, got in d.fill.partial():  # what came back stays for --resume
                    writer.submit(store.write, index, got, True)
                raise
            finally:
                lane.close()
        self.figures["driver_lane"], self.lane = lane.describe(self._epochs["frames"]), None
        self.figures.update(frames_seconds=time.perf_counter() - began, sessions_seconds=sessions, chunks=d.chunks,
                            peak_memory=[d.peaks.get(i) for i in range(len(self.actors))],
                            timeline=self._timeline(timelines), driver_busy_seconds=round(d.busy, 2),
                            actor_work=[{"frames": f, "seconds": round(t, 2), "chunks": c, "longest": m}
                                        for f, t, c, m in d.work])

    def _timeline(self, opened: dict) -> dict:
        """Seconds from the frames phase's start (negative: before it) at which Ray was asked for and was up, and
        each actor began, was warm, had the export and had its sessions open (`opened`: actor -> its `open`'s
        answer; none where it failed: its chunks said why)."""
        zero = self._epochs["frames"]
        out = {k: round(self._epochs[k] - zero, 2) for k in ("start", "ray") if k in self._epochs}
        actors = []
        for i in range(len(self.actors)):
            got = opened.get(i)
            actors.append({k: round(v - zero, 2) for k, v in got.items() if k != "node"} if got else None)
        return {**out, "actors": actors}

    def close(self) -> None:
        """The actors killed (their cards freed at once); a Ray this executor started is shut down on a helper thread
        (its processes stopped and waited for: 1.3 s of a GPU host's sweep) while the sweep goes on to its metrics,
        and waited for before this process exits or starts Ray again.

        Every Ray reference this executor holds (the export's and the sessions' ObjectRefs, the actors' handles) is
        let go first, and those only a reference cycle held are collected: one freed after Ray's shutdown makes Ray
        end the process on the spot ("the core worker has already been shutdown"), with the sweep's files not yet
        written — what the executor's owner dropping it after `close` did, now and then (a pytest worker died so)."""
        if self.lane is not None:  # Ray failed to start, or its actors: the lane's thread ends here
            self.lane.close()
            self.lane = None
        keep = self._started and self._ray_env is not None  # in the server (`kept.py`)
        if keep:
            kept.put("ray", kept.ray_key(self.address, *self._ray_env), True, kept.shut_down_ray)
        if self.actors and keep and self._clean and self._key is not None:  # for the next sweep, sessions open
            kept.put("ray-workers", self._key, kept.RayWorkers(self.actors, self.stages, self._digest, self.shipping,
                                                               self.opening, self._opened),
                     kept.let_go_workers)
            self.shipping = None
        elif self.actors:
            import ray

            for a in self.actors:
                ray.kill(a)
        self.actors, self.stages, self.opening = [], [], []
        if self.shipping is not None:
            self.shipping.close()
        if self._started and not keep:
            import atexit
            import gc
            import threading

            import ray

            gc.collect()

            global _SHUTTING_DOWN
            _SHUTTING_DOWN = threading.Thread(target=ray.shutdown, name="cpdebug-ray-shutdown")
            _SHUTTING_DOWN.start()
            atexit.register(_SHUTTING_DOWN.join)  # before Ray's own exit hook (registered earlier, run later)
        self._started = False

    def describe(self) -> dict:
        return {"kind": "ray", "address": self.address, "workers": len(self.actors),
                "cpus_per_worker": self.figures.get("cpus_per_worker", self.cpus),
                "cluster_cpus": self.figures.get("cluster_cpus"), "gpu_share": self.figures.get("gpu_share"),
                "cuda_sync": self.figures.get("cuda_sync"),
                "frames_seconds": self.figures.get("frames_seconds"), "frames_began": self._epochs.get("frames"),
                "sessions_seconds": self.figures.get("sessions_seconds"),
                "chunks": self.figures.get("chunks"), "peak_memory": self.figures.get("peak_memory"),
                "timeline": self.figures.get("timeline"), "driver_lane": self.figures.get("driver_lane"),
                "actor_work": self.figures.get("actor_work"), "driver_busy_seconds": self.figures.get(
                    "driver_busy_seconds"), "workers_kept": self._kept is not None,
                "shipped": self.shipping.describe() if self.shipping is not None else None}


def _items(tasks: list[ShardTask]) -> list:
    return [item for t in tasks for item in t.todo]


def ray_module():
    """Ray, imported through `imports.optional` (never beside an import that edits `sys.path`, issue 87): the hint
    where it is not installed, its own error where it fails to import (exit 3 either way)."""
    import logging

    from cp_debug.imports import optional

    ray = optional("ray", RAY_HINT, label="Ray")
    # Ray's records through Python's logging, not its own handler on fd 2: a record carries its thread, so an
    # export capturing fd 2 on the driver lane's thread (`export.said.Said`, stored beside a cached graph and said
    # again by every later run of that graph) no longer keeps "Started a local Ray instance" written meanwhile by
    # `ray.init` on the main thread; the command's third-party report still takes Ray's warnings
    own = logging.getLogger("ray")
    for handler in list(own.handlers):
        own.removeHandler(handler)
    own.propagate = True
    return ray


def _through_client(ray) -> bool:
    """Whether this driver reaches its cluster through Ray Client (`ray://`): its machine is then no node of it."""
    try:
        from ray.util.client import ray as client
    except ImportError:  # a Ray without its client
        return False
    return bool(client.is_connected())


def _opened(ray, ref) -> dict | None:
    """An actor's `open` answer, its ObjectRef ready (None where it failed: its chunks say why)."""
    try:
        return ray.get(ref)
    except Exception:  # noqa: BLE001 - the actor's failure is its chunks' to report
        return None

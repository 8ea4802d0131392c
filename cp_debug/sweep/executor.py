"""Who runs the shards: `InProcessExecutor` (the embedded default, one local worker) or `RayExecutor` (Ray Core
actors, one per GPU for CUDA backends or per group of CPUs, each building its sessions once). One interface:
`run(tasks, store, on_frame)` runs every pending shard and writes each through the `ShardStore` as it finishes.

Ray is imported only by `RayExecutor`. Its actors are started as soon as Ray is (`start`: each warms up — imports,
the model's modules, the comparison kernels, CUDA —; the driver exports while Ray starts), get the export once
through Ray's object store (`ship`), and are fed chunks of frames sized by their measured speed
(`chunks.ChunkPlan`), two queued on each so none waits for the driver. The actors are declared with
`max_restarts=-1, max_task_retries=-1`: a worker process killed mid-chunk is restarted by Ray and the chunk's call
runs again on it; the driver keeps each frame once, from the call's result, and writes a shard once all its frames
are back, so nothing is lost or counted twice.
"""

from __future__ import annotations

import contextlib

from typing import Any, Callable

from cp_debug.errors import BackendUnavailableError, BadInputError, CpDebugError
from cp_debug.sweep.chunks import ChunkPlan, ShardFill
from cp_debug.sweep.records import FrameResult, SweepSettings
from cp_debug.sweep.shards import ShardStore, ShardTask, frame_text
from cp_debug.sweep.warm import warm_up

OnFrame = Callable[[FrameResult], None]
OnTables = Callable[[str, dict], None]  # token, the frame's metrics tables (`metrics.frame_tables`)

RAY_HINT = "--ray needs Ray: pip install 'cp-debug[ray]' (ray>=2.40)"


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
        import time
        from concurrent.futures import ThreadPoolExecutor

        began = time.perf_counter()
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
            for r in self.worker.run_frames([item for task in tasks for item in task.todo]):
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
        self.frames_seconds, self.peak = time.perf_counter() - began, _peak_memory()

    def describe(self) -> dict:
        return {"kind": "in-process", "workers": 1, "frames_seconds": getattr(self, "frames_seconds", None),
                "peak_memory": [getattr(self, "peak", None)]}


_SHUTTING_DOWN = None  # the thread shutting down the Ray an earlier `RayExecutor.close` started (None: none)

# chunks queued on every actor: the next one starts as soon as the current one ends, while the driver reads what came
# back, writes its shards and hands the actor another
DEPTH = 2


class _ActorBody:
    """The Ray actor: warmed up when made (`warm.warm_up`: the modules, the comparison kernels, CUDA), all actors
    at once and before their sessions (the driver exported while Ray started); its worker (the recipe's `sweep`
    plug-in's) opened on the stages the driver shipped once (`open`, or the first chunk after Ray restarted a killed
    actor). One frame loop runs all the actor's chunks (`sweep/feed.py`): a threaded actor (`DEPTH` + 1 calls at
    once), each `run_chunk` call puts its frames into the loop's feed and waits for them, so the next chunk's frames
    are read ahead and the device kept busy across the chunks' ends. `passive`: more threads than CPUs on the host,
    so idle OpenMP threads sleep instead of spinning on the cores the other actors compute on (set before torch
    loads OpenMP)."""

    def __init__(self, settings: SweepSettings, cpus: int = 1, passive: bool = False):
        import os
        import threading
        import time
        from concurrent.futures import ThreadPoolExecutor

        t0 = time.perf_counter()
        from cp_debug.heap import collect_less

        collect_less()  # the collector of a `cpdebug` process (a Ray worker's is Python's default: 14x as often)
        if passive:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        # the actor's share of the host: torch, numba and the comparisons' threads (Ray caps OMP at its num_cpus),
        # no more than the in-process sweep's (`parallel.MAX_THREADS`)
        from cp_debug.parallel import MAX_THREADS

        os.environ["CPDEBUG_COMPARE_THREADS"] = str(min(cpus, MAX_THREADS))
        import torch

        torch.set_num_threads(cpus)
        self.settings, self.pid, self.worker = settings, os.getpid(), None
        self.subject = warm_up(settings)
        self._tables = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-tables")
        self._lock = threading.Lock()
        self._feed = None  # the frame loop's `FrameFeed`, once the first chunk started it
        self._waiting: dict[int, _Chunk] = {}  # frame index -> the chunk call it goes back to
        self._failed: BaseException | None = None  # what ended the frame loop
        self._last = 0.0  # when the loop last handed a frame back (perf_counter)
        self.warm_seconds = time.perf_counter() - t0

    def getpid(self) -> int:
        return self.pid

    def open(self, stages: list) -> float:
        """The worker's sessions, on the stages of `stages` (`[ObjectRef]` of the plug-in's `stage_bytes`: in a list,
        so that each call is handed the reference and the bytes are fetched here, once); the seconds the warm-up
        took."""
        with self._lock:
            if self.worker is None:
                import ray

                lanes = self.settings.lanes()
                subject = lanes.with_stages(self.subject, ray.get(stages[0]))
                self.worker = lanes.make_worker(self.settings, subject=subject).open()
        return self.warm_seconds

    def run_chunk(self, items: tuple, stages: list) -> dict:
        """The chunk's frames (`FrameResult.to_json`) and each frame's metrics tables, both made on a helper thread
        while the next frames run (the frame loop waits on the device meanwhile), the seconds the loop spent on the
        chunk and this process's peak memory."""
        import threading
        import time

        from cp_debug.sweep.feed import FrameFeed

        self.open(stages)
        if not items:  # nothing for the loop to hand back
            return {"frames": [], "tables": {}, "seconds": 0.0, "peak": _peak_memory()}
        chunk = _Chunk(len(items), time.perf_counter())
        with self._lock:
            if self._failed is not None:
                raise self._failed
            self._waiting.update((index, chunk) for index, _ in items)
            if self._feed is None:
                self._feed = FrameFeed()
                threading.Thread(target=self._loop, name="cpdebug-actor-frames", daemon=True).start()
        self._feed.put(items)
        chunk.done.wait()
        if chunk.error is not None:
            raise chunk.error
        frames, tables = [], {}
        for index, _ in items:
            token, frame, t = chunk.got[index].result()
            frames.append(frame)
            if t is not None:
                tables[token] = t
        return {"frames": frames, "tables": tables, "seconds": chunk.seconds, "peak": _peak_memory()}

    def _loop(self) -> None:
        """The actor's one frame loop over its feed: each frame's JSON and tables made on the helper thread, handed
        to the chunk waiting for it; what ends the loop goes to every chunk still waiting."""
        import time

        from cp_debug.sweep.metrics import frame_tables

        lanes, n_classes = list(self.settings.backends), len(self.worker.cfg.class_names)

        def handed_back(r):
            return r.token, r.to_json(), frame_tables(r, lanes, n_classes)

        try:
            for r in self.worker.run_frames(self._feed):
                now = time.perf_counter()
                with self._lock:
                    chunk = self._waiting.pop(r.index)
                chunk.add(r.index, self._tables.submit(handed_back, r), now, self._last)
                self._last = now
        except BaseException as err:  # noqa: BLE001 - said by every chunk call waiting, and the next ones
            with self._lock:
                self._failed = err
                for chunk in set(self._waiting.values()):
                    chunk.fail(err)
                self._waiting.clear()


class _Chunk:
    """A `run_chunk` call waiting for its frames: frame index -> the future of (token, JSON, tables); `done` once all
    are in. `seconds`: from when the loop began on it (its call's arrival, or the loop's previous frame if later) to
    its last frame."""

    def __init__(self, size: int, arrived: float):
        import threading

        self.size, self.arrived = size, arrived
        self.got: dict = {}
        self.began: float | None = None
        self.seconds = 0.0
        self.error: BaseException | None = None
        self.done = threading.Event()

    def add(self, index: int, future, now: float, previous: float) -> None:
        if self.began is None:
            self.began = max(self.arrived, previous)
        self.got[index] = future
        if len(self.got) == self.size:
            self.seconds = now - self.began
            self.done.set()

    def fail(self, err: BaseException) -> None:
        self.error = err
        self.done.set()


def _peak_memory() -> dict:
    """This process's peak resident memory, and the CUDA memory torch reserved at its peak, in MiB."""
    import resource
    import sys

    out = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["torch_cuda_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return out


class RayExecutor:
    """Shards on a Ray cluster, `address` as Ray's `ray.init` means it (`sweep --ray`'s help says it to users):
    "local" starts one on this machine with every CPU and GPU it has (shut down again in `close`), "auto" joins the
    running one, else an address; a Ray already initialised in this process (a test's `ray.init(num_cpus=2)`) is
    used as it is. `workers`: actors to start (default: one per GPU for CUDA backends, else the cluster's CPUs /
    `cpus_per_worker`). `cpus_per_worker`: the CPUs (and threads) each actor gets (default: the cluster's CPUs
    shared out between the actors, so a GPU actor is not held to one thread while the in-process sweep has all).
    `start` the actors first (they warm up meanwhile), `ship` them the export, then `run`."""

    def __init__(self, settings: SweepSettings, address: str = "auto", workers: int | None = None,
                 cpus_per_worker: int | None = None):
        self.settings, self.address = settings, address
        self.workers, self.cpus = workers, cpus_per_worker
        self.actors: list = []
        self.stages: list = []  # [the ObjectRef of the export], once shipped
        self.opening: list = []  # the actors' `open` calls (`ship`): the first one back starts the frames proper
        self.figures: dict = {}  # what `describe` tells of the run: seconds, chunks, each worker's peak memory
        self._started = False  # this executor started Ray in this process (and shuts it down)
    def _ray(self):
        try:
            import ray
        except ImportError:
            raise BackendUnavailableError(RAY_HINT) from None
        if _SHUTTING_DOWN is not None:
            _SHUTTING_DOWN.join()  # an earlier sweep's cluster is gone before this one starts
        if not ray.is_initialized():
            try:
                # a cluster of our own: its workers at the user's priority, as the in-process sweep runs (Ray's
                # default niceness of 15 lets any other process on the host starve the actors), and no idle worker
                # started a CPU for the driver (the actors get processes of their own; the CPU machine's
                # `ray.init` 3.4 s against 4.3-4.5 s, the actor ready 0.2-0.4 s later: 0.6 s less in all)
                own = ({"_system_config": {"worker_niceness": 0, "prestart_worker_first_driver": False}}
                       if self.address == "local" else {})
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False, **own)
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
        ray = self._ray()
        from cp_debug.backends.spec import BackendSpec

        cuda = any(BackendSpec.parse(b).device == "cuda" for b in self.settings.backends)  # trt-* runs on CUDA too
        res = ray.cluster_resources()
        total = max(1, int(res.get("CPU", 1)))
        if cuda:
            n = self.workers or max(1, int(res.get("GPU", 0)))
        else:
            n = self.workers or max(1, total // (self.cpus or 1))
        cpus = self.cpus or max(1, total // n)
        passive = n * max(cpus, self.settings.threads or 1) > total  # more threads than the cluster's CPUs
        opts = {"num_gpus": 1, "num_cpus": cpus} if cuda else {"num_cpus": cpus}
        actor = ray.remote(max_restarts=-1, max_task_retries=-1, max_concurrency=DEPTH + 1, **opts)(_ActorBody)
        self.actors = [actor.remote(self.settings, cpus, passive) for _ in range(n)]
        self.figures.update(cpus_per_worker=cpus, cluster_cpus=total)
        return self.actors

    def ship(self, stages: dict[str, bytes]) -> None:
        """The export (the plug-in's `stage_bytes`) put once into Ray's object store, whichever node each actor runs
        on; every actor opens its sessions on it as soon as its warm-up is done."""
        ray = self._ray()
        self.stages = [ray.put(stages)]
        self.opening = [a.open.remote(self.stages) for a in self.actors]

    def run(self, tasks: list[ShardTask], store: ShardStore, on_frame: OnFrame, on_tables: OnTables | None = None
            ) -> None:
        """Every pending frame through the actors in chunks (`ChunkPlan`, `DEPTH` queued on each); each shard written
        (on a helper thread, in order) once all its frames are back; on an error, the shards begun are written as
        partial files for `--resume`. `on_tables`: each frame's metrics tables, as the actor worked them out."""
        import time
        from concurrent.futures import ThreadPoolExecutor

        ray = self._ray()
        if not self.actors:
            self.start()
        if not self.stages:
            lanes = self.settings.lanes()
            self.ship(lanes.stage_bytes(lanes.subject(self.settings)))
        fill = ShardFill(tasks)
        plan = ChunkPlan([item for t in tasks for item in t.todo], range(len(self.actors)))
        running: dict = {}  # ObjectRef -> (actor's number, chunk)
        queued = [0] * len(self.actors)
        peaks: dict[int, dict] = {}

        def feed(i: int) -> None:
            while queued[i] < DEPTH and len(plan):
                chunk = plan.next(i)
                running[self.actors[i].run_chunk.remote(chunk, self.stages)] = (i, chunk)
                queued[i] += 1

        began, chunks, sessions = time.perf_counter(), 0, None
        opening = list(self.opening)
        with ThreadPoolExecutor(1, thread_name_prefix="cpdebug-shard") as writer:
            writes = [writer.submit(store.write, index, got) for index, got in fill.finished()]
            try:
                for i in range(len(self.actors)):
                    feed(i)
                while running:
                    ready, _ = ray.wait([*running, *opening], num_returns=1)
                    if ready[0] not in running:  # an actor's sessions are open (or failed: its chunks say so)
                        opening.remove(ready[0])
                        sessions = time.perf_counter() - began if sessions is None else sessions
                        continue
                    i, chunk = running.pop(ready[0])
                    queued[i] -= 1
                    got = _result(ray, ready[0])
                    plan.tell(i, len(chunk), got["seconds"])
                    feed(i)  # before reading what came back: the actor has its next chunks queued meanwhile
                    chunks, peaks[i] = chunks + 1, got["peak"]
                    for d in got["frames"]:
                        r = FrameResult.from_json(d)
                        if on_tables is not None and r.token in got["tables"]:
                            on_tables(r.token, got["tables"][r.token])
                        on_frame(r)
                        if (done := fill.add(r)) is not None:
                            writes.append(writer.submit(store.write, *done))
                for w in writes:
                    w.result()
            except BaseException:
                for ref in running:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref)
                for index, got in fill.partial():  # what came back stays for --resume
                    writer.submit(store.write, index, got, True)
                raise
        self.figures.update(frames_seconds=time.perf_counter() - began, sessions_seconds=sessions, chunks=chunks,
                            peak_memory=[peaks.get(i) for i in range(len(self.actors))])

    def close(self) -> None:
        """The actors killed (their cards freed at once); a Ray this executor started is shut down on a helper thread
        (its processes stopped and waited for: 1.3 s of a GPU host's sweep) while the sweep goes on to its metrics,
        and waited for before this process exits or starts Ray again."""
        if self.actors:
            import ray

            for a in self.actors:
                ray.kill(a)
            self.actors = []
        if self._started:
            import atexit
            import threading

            import ray

            global _SHUTTING_DOWN
            _SHUTTING_DOWN = threading.Thread(target=ray.shutdown, name="cpdebug-ray-shutdown")
            _SHUTTING_DOWN.start()
            atexit.register(_SHUTTING_DOWN.join)  # before Ray's own exit hook (registered earlier, run later)
            self._started = False

    def describe(self) -> dict:
        return {"kind": "ray", "address": self.address, "workers": len(self.actors),
                "cpus_per_worker": self.figures.get("cpus_per_worker", self.cpus),
                "cluster_cpus": self.figures.get("cluster_cpus"), "frames_seconds": self.figures.get("frames_seconds"),
                "sessions_seconds": self.figures.get("sessions_seconds"),
                "chunks": self.figures.get("chunks"), "peak_memory": self.figures.get("peak_memory")}


def _result(ray, ref) -> dict:
    """A chunk's result; a `CpDebugError` raised in the actor is raised here as itself (one line for the user)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, CpDebugError):
            raise cause from None
        raise

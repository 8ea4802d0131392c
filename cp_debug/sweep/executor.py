"""Who runs the shards: `InProcessExecutor` (the embedded default, one local worker) or `RayExecutor` (Ray Core
actors, one per GPU for CUDA backends or per group of CPUs, each building its sessions once). One interface:
`run(tasks, store, on_frame)` runs every pending shard and writes each through the `ShardStore` as it finishes.

Ray is imported only by `RayExecutor`. Its actors are declared with `max_restarts=-1, max_task_retries=-1`: a
worker process killed mid-shard is restarted by Ray and the shard's call runs again on it; the driver writes a
shard once, from the call's result, so nothing is lost or counted twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cp_debug.errors import BackendUnavailableError, BadInputError, CpDebugError
from cp_debug.sweep.records import FrameResult, SweepSettings
from cp_debug.sweep.shards import ShardStore, ShardTask, frame_text
from cp_debug.sweep.worker import SweepWorker

OnFrame = Callable[[FrameResult], None]

RAY_HINT = "--ray needs Ray: pip install 'cp-debug[ray]' (ray>=2.40)"


class InProcessExecutor:
    """Every shard in this process through one worker (built once); the partial file follows each frame (with
    `partial_every`, at most once in that many seconds: a killed sweep loses at most that much work). The
    frames of all shards are one stream, so the worker's read-ahead runs on across shard boundaries, and the shard
    files are written (fsync'd) on a helper thread while the next frame runs, one write at a time, in order."""

    def __init__(self, worker: SweepWorker, partial_every: float = 0.0):
        self.worker = worker
        self.partial_every = partial_every  # seconds between two writes of a partial file (0: after every frame)

    def run(self, tasks: list[ShardTask], store: ShardStore, on_frame: OnFrame) -> None:
        import time
        from concurrent.futures import ThreadPoolExecutor

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

    def describe(self) -> dict:
        return {"kind": "in-process", "workers": 1}


class _ActorBody:
    """The Ray actor: a `SweepWorker` opened once in the actor's process."""

    def __init__(self, settings: SweepSettings, onnx_dir: str, cpus: int = 1):
        import os

        # the actor's share of the host: torch, numba and the comparisons' threads (Ray caps OMP at its num_cpus)
        os.environ["CPDEBUG_COMPARE_THREADS"] = str(cpus)
        import torch

        torch.set_num_threads(cpus)
        self.worker = SweepWorker(settings, onnx_dir).open()
        self.pid = os.getpid()

    def getpid(self) -> int:
        return self.pid

    def run_shard(self, task: ShardTask) -> list[dict]:
        done = list(task.done)
        return [r.to_json() for r in done] + [r.to_json() for r in self.worker.run_frames(task.todo)]


class RayExecutor:
    """Shards on a Ray cluster, `address` as Ray's `ray.init` means it (`sweep --ray`'s help says it to users):
    "local" starts one on this machine with every CPU and GPU it has (shut down again in `close`), "auto" joins the
    running one, else an address; a Ray already initialised in this process (a test's `ray.init(num_cpus=2)`) is
    used as it is. `workers`: actors to start (default: one per GPU for CUDA backends, else the cluster's CPUs /
    `cpus_per_worker`). `cpus_per_worker`: the CPUs (and threads) each actor gets (default: the cluster's CPUs
    shared out between the actors, so a GPU actor is not held to one thread while the in-process sweep has all)."""

    def __init__(self, settings: SweepSettings, onnx_dir: str | Path, address: str = "auto", workers: int | None = None,
                 cpus_per_worker: int | None = None):
        self.settings, self.onnx_dir, self.address = settings, str(onnx_dir), address
        self.workers, self.cpus = workers, cpus_per_worker
        self.actors: list = []
        self._started = False  # this executor started Ray in this process (and shuts it down)

    def _ray(self):
        try:
            import ray
        except ImportError:
            raise BackendUnavailableError(RAY_HINT) from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
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
        opts = {"num_gpus": 1, "num_cpus": cpus} if cuda else {"num_cpus": cpus}
        actor = ray.remote(max_restarts=-1, max_task_retries=-1, **opts)(_ActorBody)
        # the actors build their model and sessions now, while the driver goes on planning
        self.actors = [actor.remote(self.settings, self.onnx_dir, cpus) for _ in range(n)]
        self.cpus_each, self.cluster_cpus = cpus, total
        return self.actors

    def run(self, tasks: list[ShardTask], store: ShardStore, on_frame: OnFrame) -> None:
        ray = self._ray()
        if not self.actors:
            self.start()
        queue = list(tasks)
        running: dict = {}
        idle = list(self.actors)
        try:
            while queue or running:
                while queue and idle:
                    actor, task = idle.pop(), queue.pop(0)
                    running[actor.run_shard.remote(task)] = (actor, task)
                ready, _ = ray.wait(list(running), num_returns=1)
                actor, task = running.pop(ready[0])
                try:
                    results = [FrameResult.from_json(d) for d in ray.get(ready[0])]
                except ray.exceptions.RayError as err:  # a CpDebugError in the actor is still one line
                    cause = getattr(err, "cause", None)
                    if isinstance(cause, CpDebugError):
                        raise cause from None
                    raise
                for r in results[len(task.done):]:
                    on_frame(r)
                store.write(task.index, sorted(results, key=lambda r: r.index))
                idle.append(actor)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.actors:
            import ray

            for a in self.actors:
                ray.kill(a)
            self.actors = []
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def describe(self) -> dict:
        return {"kind": "ray", "address": self.address, "workers": len(self.actors),
                "cpus_per_worker": getattr(self, "cpus_each", self.cpus),
                "cluster_cpus": getattr(self, "cluster_cpus", None)}

"""The Ray actor of a `RayExecutor` (`executor.py`): its warm-up as it is made, its worker opened on the export the
driver shipped, and its one frame loop fed by every `run_chunk` call (`feed.FrameFeed`). Imported by Ray in the
actor's own process; nothing here imports Ray at module level.
"""

from __future__ import annotations

from cp_debug.openmp import sleeping_threads
from cp_debug.sweep.records import SweepSettings
from cp_debug.sweep.warm import warm_up

# chunks queued on every actor: the next one starts as soon as the current one ends, while the driver reads what came
# back, writes its shards and hands the actor another
DEPTH = 2


class ActorBody:
    """The Ray actor: warmed up when made (`warm.warm_up`: the modules, the comparison kernels, CUDA), all actors
    at once and before their sessions (the driver exported while Ray started); its worker (the recipe's `sweep`
    plug-in's) opened on the stages the driver shipped once (`open`, or the first chunk after Ray restarted a killed
    actor). One frame loop runs all the actor's chunks (`sweep/feed.py`): a threaded actor (`DEPTH` + 1 calls at
    once), each `run_chunk` call puts its frames into the loop's feed and waits for them, so the next chunk's frames
    are read ahead and the device kept busy across the chunks' ends. `passive`: more threads than CPUs on the host,
    so idle OpenMP threads sleep instead of spinning on the cores the other actors compute on (set before torch
    loads OpenMP). `cuda_sync`: how its threads wait on the card (`cuda_driver.sync_mode`, the driver's setting).
    """

    def __init__(self, settings: SweepSettings, cpus: int = 1, passive: bool = False, shipment=None,
                 cuda_sync: str | None = None):
        import os
        import threading
        import time
        from concurrent.futures import ThreadPoolExecutor

        self.began = time.time()
        from cp_debug.heap import collect_less

        collect_less()  # the collector of a `cpdebug` process (a Ray worker's is Python's default: 14x as often)
        if passive:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        drivers_sync(cuda_sync)  # before torch or ONNX Runtime makes a context
        sleeping_threads()  # as in a `cpdebug` process: an actor's environment is its node's, not the driver's
        # the actor's share of the host: torch, numba and the comparisons' threads (Ray caps OMP at its num_cpus),
        # no more than the in-process sweep's (`parallel.MAX_THREADS`)
        from cp_debug.parallel import MAX_THREADS

        os.environ["CPDEBUG_COMPARE_THREADS"] = str(min(cpus, MAX_THREADS))
        import torch

        # no more torch threads in the warm-up than the worker then runs with (its `open` sets `settings.threads`,
        # the in-process sweep's count), not one per CPU of a whole host beside the warm-up's helper threads
        torch.set_num_threads(min(cpus, settings.threads or cpus))
        import ray

        # (outside a Ray worker — the body run on its own, tests/sweep/test_actor_loop.py — no node, and no Ray
        # started for the question: `get_runtime_context` starts one where none is up)
        self.node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        # on another host than the driver's, the checkpoint the driver shipped (`ship.Shipment`), written here
        settings = shipment.settings_here(settings, self.node) if shipment is not None else settings
        self.settings, self.pid, self.worker = settings, os.getpid(), None
        self.opened: dict | None = None  # `open`'s answer, once it opened the worker
        self._marks: dict[str, float] = {"imported": time.time()}  # when each part of the warm-up was done
        self.subject = warm_up(settings, self._marks)
        self._tables = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-tables")
        self._lock = threading.Lock()
        self._feed = None  # the frame loop's `FrameFeed`, once the first chunk started it
        self._waiting: dict[int, _Chunk] = {}  # frame index -> the chunk call it goes back to
        self._failed: BaseException | None = None  # what ended the frame loop
        self._last = 0.0  # when the loop last handed a frame back (perf_counter)
        self._marks["warm"] = time.time()

    def getpid(self) -> int:
        return self.pid

    def open(self, stages: list) -> dict | None:
        """The worker's sessions, on the stages of `stages` (`[ObjectRef]` of the plug-in's `stage_bytes`: in a list,
        so that each call is handed the reference and the bytes are fetched here, once). Returned: when (epoch
        seconds) the actor began, was warm, asked for the stages, had them and had its sessions open, and "node":
        its Ray node (the driver ships it the frames of files until it knows, `ship.Shipping`)."""
        import time

        with self._lock:
            if self.worker is None:
                import ray

                lanes = self.settings.lanes()
                asked = time.time()
                got = ray.get(stages[0])
                fetched = time.time()
                subject = lanes.with_stages(self.subject, got)
                self.worker = lanes.make_worker(self.settings, subject=subject).open()
                self.opened = {"began": self.began, **self._marks, "asked": asked, "fetched": fetched,
                               "open": time.time(), "node": self.node}
        return self.opened

    def run_chunk(self, items: tuple, stages: list) -> dict:
        """The chunk's frames (`FrameResult.to_json`) and each frame's metrics tables, both made on a helper thread
        while the next frames run (the frame loop waits on the device meanwhile), the seconds the loop spent on the
        chunk and this process's peak memory."""
        import threading
        import time

        from cp_debug.sweep.feed import FrameFeed

        self.open(stages)
        if not items:  # nothing for the loop to hand back
            return {"frames": [], "tables": {}, "seconds": 0.0, "peak": peak_memory()}
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
        return {"frames": frames, "tables": tables, "seconds": chunk.seconds, "peak": peak_memory()}

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


def peak_memory() -> dict:
    """This process's peak resident memory, and the CUDA memory torch reserved at its peak, in MiB."""
    import resource
    import sys

    out = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["torch_cuda_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def drivers_sync(cuda_sync: str | None) -> None:
    """The driver's CPDEBUG_CUDA_SYNC (`cuda_driver.sync_mode`), not this node's, made this process's (for the
    backends' own checks later in it too) and set on the contexts to come (`cuda_driver.apply_sync`)."""
    import os

    from cp_debug.cuda_driver import SYNC_ENV, apply_sync

    if cuda_sync is None:
        os.environ.pop(SYNC_ENV, None)
    else:
        os.environ[SYNC_ENV] = cuda_sync
    apply_sync()

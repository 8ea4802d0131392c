"""CenterPoint's sweep worker: every backend's probed pipeline (the pair) built once, then each frame through all
of them.

Per frame the reference runs first with the probes of the level exposed (torch hooks, or ONNX Runtime extra
outputs mapped through `probes/` names); then each candidate runs end to end on its own upstream values and
each probe and stage boundary is compared with the reference's as a `TensorDiff`, of which only the scalar
metrics are kept; the decoded boxes are matched to the reference's (`compare_detections`). No tensor outlives
its frame, so memory stays flat in the number of frames. A frame that cannot be read or run is a `failed`
result with its one-line reason; the worker goes on with the next frame.

The lanes (and the subject they are built from) are `lanes.py`'s, a frame's judging `sweep/judge.py`'s, the
records `sweep/records.py`'s; this module holds the frame loop (the `sweep` plug-in's `worker`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from cp_debug.data.frames import Frame
from cp_debug.errors import BadInputError
from cp_debug.parallel import on_stream
from cp_debug.sweep.failures import or_failed
from cp_debug.sweep.feed import FLUSH
from cp_debug.sweep.judge import box_lists, candidate_frame, detection_delta, truth_lists
from cp_debug.recipes.centerpoint.sweep.lanes import (
    Lane, build_subject, calibration_feeds, make_lane, probe_order, run_lane
)
from cp_debug.sweep.records import FrameResult, SweepSettings, frame_status

# Frames read ahead of the one running, on threads: a file read releases the GIL; a held-out synthetic scene
# (data/scenes.py) holds it for about a third of its making (the layout's Python loop and its per-primitive calls;
# the random draws, array work and BLAS release it), ~10 ms a frame at awml-base (benchmarks/scene_speed.py --gil).
# A quarter of the cores, 1 to 4.
FRAMES_AHEAD = max(1, min(4, (os.cpu_count() or 1) // 4))


class SweepWorker:
    """Sessions built once (`open`), then `run_frame` per frame; a context manager. `onnx_dir`: the two stages
    already exported (read instead of exporting again); `subject`: the subject already built, its stages in place
    (a Ray actor's: its modules built while the driver exported, the stages from Ray's object store)."""

    def __init__(self, settings: SweepSettings, onnx_dir: str | Path | None = None, subject=None):
        self.settings = settings
        self.onnx_dir = Path(onnx_dir) if onnx_dir is not None else None
        self.cfg = None
        self.subject = subject
        self.order: list[str] = []
        self._lanes: list[Lane] = []
        self._stack = None
        self._side_pool = None  # the helper thread of the lanes that run beside the reference (`_beside`)
        self._side_stream = None
        self._compare_stream = None  # where `run_frames` queues a frame's comparisons while the next one runs
        self._front_streams: dict[str, Any] = {}  # device -> the CUDA stream the frame-reading threads make fronts on
        self._front_lock = threading.Lock()

    # -- building ----------------------------------------------------------------------------------------
    def open(self) -> "SweepWorker":
        from contextlib import ExitStack

        if self._stack is not None:  # open already (`with` over an opened worker): its lanes once
            return self
        s = self.settings
        self.cfg = s.config()
        if self.subject is None:
            self.subject = build_subject(s, self.onnx_dir)
        self.order = probe_order(self.subject, s.level)
        if s.threads:
            import torch

            torch.set_num_threads(s.threads)
        self._stack = ExitStack()
        from concurrent.futures import ThreadPoolExecutor

        self._side_pool = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-lane")
        try:
            calib = calibration_feeds(s, self.cfg)
            for label in s.backends:
                lane = make_lane(label, s, self.subject, calib)
                self._stack.enter_context(lane.encoder.runner)
                self._stack.enter_context(lane.backbone.runner)
                self._lanes.append(lane)
        except BaseException:
            self.close()
            raise
        return self

    def _beside(self, ref_lane: Lane, cands: list[Lane]) -> list[Lane]:
        """The candidates that run beside the reference: ONNX Runtime lanes resident on its CUDA device (a torch
        candidate would share torch's global conv settings with the reference, so it runs after it)."""
        if not self.settings.overlap or not ref_lane.on_cuda():
            return []
        return [lane for lane in cands if not lane.spec.is_torch and lane.on_cuda()]

    def _run_beside(self, lanes: list[Lane], points: np.ndarray, fronts: dict) -> dict[str, Any]:
        """`lanes` run one after the other on the worker's side stream (on its helper thread): label -> (result,
        probes), or the exception a lane raised. Every value is complete on return."""
        import torch

        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream()  # on the current device, where every CUDA lane runs
        for front in fronts.values():
            front.used_on(self._side_stream)

        def run() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for lane in lanes:
                try:
                    out[lane.label] = run_lane(lane, self.cfg, points, fronts.get(lane.glue_device()))
                except (KeyboardInterrupt, SystemExit, MemoryError):
                    raise
                except BaseException as err:  # noqa: BLE001 - raised by _compare in the lanes' order
                    out[lane.label] = err
            return out

        return on_stream(self._side_stream, run)

    def close(self) -> None:
        if self._side_pool is not None:
            self._side_pool.shutdown(wait=True)
            self._side_pool = None
        self._side_stream = None
        self._compare_stream = None
        self._front_streams = {}
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        self._lanes = []

    def __enter__(self) -> "SweepWorker":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running -----------------------------------------------------------------------------------------
    def run_frames(self, items: Iterable[tuple[int, Frame]], ahead: int | None = None) -> Iterator[FrameResult]:
        """`run_frame` over (index, frame) pairs, in order, the next `ahead` frames read (a file, a bag message, a
        synthetic scene made) on helper threads while the current one runs (an awml-base held-out scene costs
        about 30 ms of one core, `benchmarks/scene_speed.py`). `ahead` defaults to `FRAMES_AHEAD` (1 on a machine of
        2 cores or fewer). On a CUDA reference with `overlap` (`_pipelined`) a frame is compared and judged while the
        next frame's reference network runs on the device (between its launch and its decode), not after its own:
        the host's 15-20 ms of comparisons and detection matching off the device's critical path. `items` is read
        as it goes (a Ray actor's `sweep/feed.FrameFeed`): at a `FLUSH` in it every frame before is handed back
        before the next item is asked for."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        source = iter(items)
        ahead = max(1, ahead or FRAMES_AHEAD)
        pipelined = self._pipelined()
        pending: list[_Ran] = []  # a frame whose lanes ran, judged while the next frame's reference runs
        judged: list[FrameResult] = []

        def meanwhile() -> None:
            if pending:
                ran = pending.pop()
                judged.append(or_failed(ran.index, ran.token, self._judge, ran, self._compare_stream))

        with ThreadPoolExecutor(ahead, thread_name_prefix="cpdebug-frame") as pool:
            coming: deque = deque()  # (index, frame, its read's future), or FLUSH

            def read_ahead() -> None:  # up to `ahead` frames asked for, none past a FLUSH (the source may wait)
                while len(coming) < ahead and (not coming or coming[-1] is not FLUSH):
                    item = next(source, None)
                    if item is None:
                        return
                    coming.append(item if item is FLUSH else (*item, pool.submit(self._load, item[1])))

            read_ahead()
            while coming:
                entry = coming.popleft()
                if entry is FLUSH:
                    meanwhile()
                    yield from judged
                    judged.clear()
                    read_ahead()
                    continue
                index, frame, reading = entry
                loaded = reading.result()
                read_ahead()
                if not pipelined:
                    yield self.run_frame(index, frame, loaded)
                    continue
                ran = or_failed(index, frame.token, self._lanes_of, index, frame.token, loaded, meanwhile)
                meanwhile()  # where the frame failed before its reference's decode
                yield from judged
                judged.clear()
                if isinstance(ran, FrameResult):
                    yield ran
                else:
                    pending.append(ran)
            meanwhile()
            yield from judged

    def _pipelined(self) -> bool:
        """Whether `run_frames` judges each frame while the next one's reference runs: with `overlap`, on a CUDA
        reference (whose network is queued on the device while the host judges). Each frame's figures are the ones
        of judging it at once: the same kernels, on a stream of their own."""
        if not (self.settings.overlap and self._lanes and self._lanes[0].on_cuda()):
            return False
        if self._compare_stream is None:
            import torch

            # high priority: the comparisons' short kernels go between the next frame's convolutions
            self._compare_stream = torch.cuda.Stream(priority=-1)
        return True

    def _lanes_of(self, index: int, token: str, loaded, meanwhile) -> "_Ran":
        """`_run_lanes` of a frame read ahead (`loaded`: its `_Loaded`, or the exception reading it raised)."""
        if isinstance(loaded, BaseException):
            raise loaded
        return self._run_lanes(index, token, loaded, meanwhile)

    def _load(self, frame: Frame):
        """The frame read and checked (`_Loaded`), or the exception that raised (which `run_frame` turns into a
        failed result)."""
        try:
            return self._read(frame, ahead=True)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as err:  # noqa: BLE001 - the frame's own failure, recorded by run_frame
            return err

    def _read(self, frame: Frame, ahead: bool = False) -> "_Loaded":
        """The frame's scan and points; `ahead` (on a frame-reading thread): with `overlap`, its fronts on the CUDA
        devices of the lanes too (`_fronts`), made while an earlier frame runs."""
        scan = frame.load(self.cfg)
        points = np.asarray(scan.points)
        if not np.isfinite(points).all():
            raise BadInputError(f"{int((~np.isfinite(points)).sum())} point values are NaN or Inf")
        cuda = {lane.glue_device() for lane in self._lanes if lane.on_cuda()}
        fronts = self._fronts(points, cuda, own_stream=True) if ahead and self.settings.overlap else {}
        return _Loaded(scan, points, fronts)

    def _fronts(self, points: np.ndarray, devices: set[str], own_stream: bool = False) -> dict:
        """device -> the frame's `pipeline.Front` there: its voxels and decorated features, made once for every lane
        whose glue runs on that device. `own_stream`: a CUDA front is made on the frame-reading threads' stream (off
        the lanes' streams; complete on return)."""
        from cp_debug.recipes.centerpoint.pipeline import make_front

        out = {}
        for device in sorted(devices):
            if own_stream and device.startswith("cuda"):
                import torch

                with self._front_lock:  # one stream for every frame-reading thread: one pool of torch's allocator
                    stream = self._front_streams.get(device)
                    if stream is None:
                        stream = self._front_streams[device] = torch.cuda.Stream(device=device)
                out[device] = on_stream(stream, make_front, self.cfg, points, device)
            else:
                out[device] = make_front(self.cfg, points, device)
        return out

    def run_frame(self, index: int, frame: Frame, loaded=None) -> FrameResult:
        """One frame through every lane; any failure is a `failed` result with its one-line reason. `loaded`: the
        frame already read (`_load`'s `_Loaded`, or the exception reading it raised), as `run_frames` passes it."""
        return or_failed(index, frame.token, self._compare, index, frame, loaded)

    def _compare(self, index: int, frame: Frame, loaded=None) -> FrameResult:
        """One frame read (where `loaded` is None), every lane run (`_run_lanes`), then compared and judged
        (`_judge`)."""
        return self._judge(self._lanes_of(index, frame.token, self._read(frame) if loaded is None else loaded, None))

    def _run_lanes(self, index: int, token: str, loaded: "_Loaded", meanwhile=None) -> "_Ran":
        """Every lane on the frame: the ONNX Runtime lanes on the reference's CUDA device beside it (`_beside`), the
        others after it. `meanwhile()`: called once the reference's network is queued, before its decode waits for
        it (the previous frame's judging, `run_frames`); the caller calls it where a lane fails first."""
        points = loaded.points
        ref_lane, *cands = self._lanes
        fronts = dict(loaded.fronts)
        if self.settings.overlap:  # one front a device for every lane there; a CUDA one made ahead already
            fronts.update(self._fronts(points, {lane.glue_device() for lane in self._lanes} - set(fronts)))
            if any(device.startswith("cuda") for device in fronts):
                import torch

                for front in fronts.values():
                    front.used_on(torch.cuda.current_stream())
        lanes = self._beside(ref_lane, cands)
        beside = self._side_pool.submit(self._run_beside, lanes, points, fronts) if lanes else None
        try:
            ref_res, ref_probes = run_lane(ref_lane, self.cfg, points, fronts.get(ref_lane.glue_device()), meanwhile)
        finally:
            ran = beside.result() if beside is not None else {}  # waited for before any error leaves the frame
        got = {}
        for lane in cands:
            res = (ran[lane.label] if lane.label in ran
                   else run_lane(lane, self.cfg, points, fronts.get(lane.glue_device())))
            if isinstance(res, BaseException):
                raise res
            got[lane.label] = (res[0].detections, res[1])
        # only what judging reads is kept (the boxes and the probes), not the runs' voxels and features
        return _Ran(index, token, len(points), loaded.scan.truth, (ref_res.detections, ref_probes), got,
                    beside=bool(ran))

    def _judge(self, ran: "_Ran", stream=None) -> FrameResult:
        """The frame's candidates compared with its reference and judged; `stream`: the CUDA stream the comparisons
        are queued on (None: the current one), complete on return."""
        gt = ran.truth
        ref_lane, *cands = self._lanes
        ref_dets, ref_probes = ran.ref
        boxes = {ref_lane.label: box_lists(ref_dets)}
        out = []
        for lane in cands:
            dets, probes = ran.cands[lane.label]
            delta = detection_delta(ref_dets, dets, self.cfg.class_names, self.settings.max_dist, self.cfg)
            out.append(candidate_frame(lane.label, lane.precision, self.order, lane.missing, ref_probes, probes,
                                       self.settings, delta, self.cfg,
                                       lane.amax() if lane.precision == "int8" else None, stream))
            del probes
            boxes[lane.label] = box_lists(dets)
        if ran.beside and stream is None:  # the side stream's tensors go back to its pool only once torch's stream
            import torch                    # is done reading them

            torch.cuda.current_stream().synchronize()
        return FrameResult(ran.index, ran.token, frame_status(out), None, int(ran.num_points), tuple(out), boxes,
                           truth_lists(gt))


@dataclass(frozen=True)
class _Ran:
    """A frame whose lanes have run, not yet compared: the reference's (detections, probes), each candidate's."""

    index: int
    token: str
    num_points: int
    truth: Any  # the scan's ground truth, or None
    ref: tuple
    cands: dict
    beside: bool  # some candidates ran on the side stream


@dataclass(frozen=True)
class _Loaded:
    """A frame read: its scan, its points (finite), and device -> `pipeline.Front` made ahead (`SweepWorker._read`)."""

    scan: Any
    points: np.ndarray
    fronts: dict = field(default_factory=dict)

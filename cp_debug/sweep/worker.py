"""One sweep worker: every backend's probed pipeline built once, then each frame through all of them.

Per frame the reference runs first with the probes of the level exposed (torch hooks, or ONNX Runtime extra
outputs mapped through `probes/` names); then each candidate runs end to end on its own upstream values and
each probe and stage boundary is compared with the reference's as a `TensorDiff`, of which only the scalar
metrics are kept; the decoded boxes are matched to the reference's (`compare_detections`). No tensor outlives
its frame, so memory stays flat in the number of frames. A frame that cannot be read or run is a `failed`
result with its one-line reason; the worker goes on with the next frame.

A candidate label `SPEC@DIR` (e.g. `ort@deploy/`) runs the two deployed ONNX files of DIR
(`pts_voxel_encoder.onnx`, `pts_backbone_neck_head.onnx`) instead of the model's own export; its probes are
the tensors of the same names, and those the deployed graph lacks are reported `missing`.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from cp_debug.errors import BadInputError, CpDebugError
from cp_debug.data.frames import Frame
from cp_debug.parallel import on_stream

DISTANCE_BUCKETS = ((0.0, 50.0, "0-50m"), (50.0, 90.0, "50-90m"), (90.0, math.inf, "90m+"))
BOUNDARIES = ("pillar_features", "spatial_features")  # the glue's tensors between the two stages


def bucket_of(x: float, y: float) -> str:
    d = math.hypot(x, y)
    return next(name for lo, hi, name in DISTANCE_BUCKETS if lo <= d < hi)


# Frames read ahead of the one running, on threads: a file read releases the GIL; a held-out synthetic scene
# (data/scenes.py) holds it for about a third of its making (the layout's Python loop and its per-primitive calls;
# the random draws, array work and BLAS release it), ~10 ms a frame at awml-base (benchmarks/scene_speed.py --gil).
# A quarter of the cores, 1 to 4.
FRAMES_AHEAD = max(1, min(4, (os.cpu_count() or 1) // 4))


@dataclass(frozen=True)
class SweepSettings:
    """What every worker needs to build the same lanes (picklable: it travels to Ray actors)."""

    backends: tuple[str, ...]
    preset: str = "demo"
    level: str = "block"
    checkpoint: str | None = None
    random_weights: bool = False
    seed: int = 0
    int8_dir: str | None = None
    deterministic: bool = True
    cudnn_algo: str | None = None  # Determinism.conv_algo
    max_dist: float = 2.0
    calib_scenes: int = 4
    # torch and ONNX Runtime intra-op threads in every worker: their reductions split work by thread, so the same
    # count on every worker (a Ray actor gets OMP_NUM_THREADS=1) is what makes a Ray sweep equal an in-process one
    # number for number. None: run_sweep fixes it to this machine's `parallel.thread_count()`.
    threads: int | None = None
    # how probes and boxes are judged: "model" (each candidate against its precision's noise, compare/noise.py) or
    # "fixed" (element-wise atol/rtol at the candidate's precision, as before); atol/rtol override the defaults
    tolerance_mode: str = "model"
    atol: float | None = None
    rtol: float | None = None
    # ONNX Runtime candidates on the reference's CUDA device run beside it (a thread and a CUDA stream of their own)
    # instead of after it, and the lanes whose glue runs on one device share each frame's voxels and features (on
    # CUDA made by the frame-reading threads, ahead of the frame): host and GPU work overlap; every value is the same
    overlap: bool = True

    def to_json(self) -> dict:
        """The settings a sweep's results depend on (the manifest's identity for --resume): `overlap` changes no
        value, so it is left out."""
        out = asdict(self)
        out.pop("overlap")
        return out


@dataclass(frozen=True)
class ProbeStat:
    """One probe (or stage boundary) of one candidate on one frame: the scalar comparison with the reference."""

    probe: str
    order: int  # position in the pipeline (topological across both stages)
    rel_rmse: float
    rel_max: float  # max |cand - ref| / max |ref|
    cosine: float
    max_abs: float
    nan: int
    inf: int
    status: str  # ok | diverged | nan | shape_mismatch | missing
    expected_rel_rmse: float = math.nan  # the precision's budget at this probe (compare/noise.py)
    noise_ratio: float = math.nan  # rel_rmse / expected_rel_rmse


@dataclass(frozen=True)
class DetectionDelta:
    """The candidate's boxes against the reference's on one frame; `by_class` / `by_range` map a class or a
    distance bucket to [matched, lost, added]."""

    num_ref: int
    num_cand: int
    matched: int
    lost: int
    added: int
    max_centre_shift: float
    mean_centre_shift: float
    max_score_change: float
    max_yaw_change: float
    changed: bool
    by_class: dict = field(default_factory=dict)
    by_range: dict = field(default_factory=dict)
    lost_scores: tuple[float, ...] = ()  # the reference's scores of the boxes lost
    added_scores: tuple[float, ...] = ()  # the candidate's scores of the boxes added
    score_cuts: tuple[float, ...] = ()  # where boxes are cut by score (compare/noise.score_cuts)


@dataclass(frozen=True)
class CandidateFrame:
    candidate: str
    probes: tuple[ProbeStat, ...]
    detections: DetectionDelta
    diverged: bool  # flagged: a probe or the boxes beyond the tolerance (mode fixed) or the precision (mode model)
    outcome: str | None = None  # noise.Outcome's value on this frame alone (rank.py adds the cross-frame local class)
    reason: str | None = None  # why, in a few words
    precision: str | None = None  # what it was judged at (a deployed folder: the precision its files hold)


@dataclass(frozen=True)
class FrameResult:
    """One frame through every lane. `boxes`: per lane {"boxes", "scores", "labels"} lists (for the metrics);
    `gt`: the ground truth, where the frame has one."""

    index: int
    token: str
    status: str  # ok | diverged | failed
    reason: str | None = None
    num_points: int = 0
    candidates: tuple[CandidateFrame, ...] = ()
    boxes: dict = field(default_factory=dict)
    gt: dict | None = None

    def to_json(self) -> dict:
        """The fields as a dict; `boxes` and `gt` (plain lists already, the bulk of a frame) as they are, not copied."""
        return {"index": self.index, "token": self.token, "status": self.status, "reason": self.reason,
                "num_points": self.num_points, "candidates": [asdict(c) for c in self.candidates],
                "boxes": self.boxes, "gt": self.gt}

    @classmethod
    def from_json(cls, d: dict) -> "FrameResult":
        cands = tuple(CandidateFrame(c["candidate"], tuple(_probe_stat(p) for p in c["probes"]),
                                     _delta(c["detections"]), c["diverged"], c.get("outcome"), c.get("reason"),
                                     c.get("precision")) for c in d["candidates"])
        return cls(d["index"], d["token"], d["status"], d.get("reason"), d.get("num_points", 0), cands,
                   d.get("boxes", {}), d.get("gt"))


def _probe_stat(d: dict) -> ProbeStat:
    """From JSON, where non-finite floats are the strings "nan" / "inf" (report/io.py)."""
    floats = ("rel_rmse", "rel_max", "cosine", "max_abs", "expected_rel_rmse", "noise_ratio")
    return ProbeStat(**{k: float(v) if k in floats else v for k, v in d.items()})


def _delta(d: dict) -> DetectionDelta:
    return DetectionDelta(**{k: tuple(v) if k in ("lost_scores", "added_scores", "score_cuts") else v
                             for k, v in d.items()})


class _Tap:
    """A runner seen by `run_pipeline`: returns the stage's outputs and keeps the probes (renamed to module
    names) of the last call aside."""

    is_active = True

    def __init__(self, runner: Any, outputs: Sequence[str], rename: dict[str, str]):
        self.runner, self.outputs, self.rename = runner, tuple(outputs), rename
        self.probes: dict[str, np.ndarray] = {}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._keep(self.runner.infer(feed))

    def can(self, capability) -> bool:
        return self.runner.can(capability)

    def infer_device(self, feed: dict) -> dict:
        """The runner's `infer_device`: outputs and probes stay torch tensors on its device."""
        return self._keep(self.runner.infer_device(feed))

    def _keep(self, out: dict) -> dict:
        self.probes = {self.rename[k]: v for k, v in out.items() if k in self.rename}
        return {k: out[k] for k in self.outputs if k in out}


@dataclass
class _Lane:
    label: str
    spec: Any
    encoder: _Tap
    backbone: _Tap
    missing: tuple[str, ...] = ()
    precision: str = "fp32"  # what it is judged at: the spec's, or the precision a deployed folder's files hold
    resident: bool | None = None  # values kept torch tensors on the spec's device; None: on CUDA

    def amax(self) -> dict[str, float]:
        """probe -> INT8's calibrated amax at that probe's tensor, where the runners quantized it."""
        out = {}
        for tap in (self.encoder, self.backbone):
            found = tap.runner.quant_amax() if hasattr(tap.runner, "quant_amax") else {}
            out.update({tap.rename[t]: float(a) for t, a in (found or {}).items() if t in tap.rename})
        return out

    def kept_resident(self) -> bool:
        """Whether the lane's values stay torch tensors on its device (`resident`, by default on CUDA, where both
        runners take tensors)."""
        from cp_debug.recipes.centerpoint.pipeline import can_take_tensors

        resident = self.spec.device == "cuda" if self.resident is None else self.resident
        return bool(resident) and can_take_tensors(self.encoder) and can_take_tensors(self.backbone)

    def on_cuda(self) -> bool:
        """Whether the lane runs resident on a CUDA device (its values torch tensors there)."""
        return self.spec.device == "cuda" and self.kept_resident()

    def glue_device(self) -> str:
        """Where the lane's glue runs: its device when resident, else the CPU."""
        return self.spec.device if self.kept_resident() else "cpu"

    def run(self, cfg, points: np.ndarray, front=None, meanwhile=None) -> tuple[Any, dict[str, Any]]:
        """The frame through this lane: the result and its probes by name, torch tensors on the device for a CUDA
        lane (the glue runs there too, `run_pipeline`'s resident run), numpy arrays otherwise. `front`: the frame's
        voxels and features already made on `glue_device()` (`pipeline.make_front`); `meanwhile`: `run_pipeline`'s
        `before_decode`."""
        from cp_debug.recipes.centerpoint.pipeline import run_pipeline

        resident = self.kept_resident()
        res = run_pipeline(cfg, points, self.encoder, self.backbone, capture=True, device=self.glue_device(),
                           resident=resident, on_device=True, step_times=False, front=front,
                           before_decode=meanwhile)
        probes = {**self.encoder.probes, **self.backbone.probes}
        self.encoder.probes = self.backbone.probes = {}
        probes.setdefault("pillar_features", res.pillar_features)
        probes["spatial_features"] = res.spatial_features
        probes.update(res.head)
        return res, probes


class SweepWorker:
    """Sessions built once (`open`), then `run_frame` per frame; a context manager. `onnx_dir`: the two stages
    already exported by the driver (each Ray actor loads them instead of exporting again)."""

    def __init__(self, settings: SweepSettings, onnx_dir: str | Path | None = None):
        self.settings = settings
        self.onnx_dir = Path(onnx_dir) if onnx_dir is not None else None
        self.cfg = None
        self.subject = None
        self.order: list[str] = []
        self._lanes: list[_Lane] = []
        self._stack = None
        self._side_pool = None  # the helper thread of the lanes that run beside the reference (`_beside`)
        self._side_stream = None
        self._compare_stream = None  # where `run_frames` queues a frame's comparisons while the next one runs
        self._front_streams: dict[str, Any] = {}  # device -> the CUDA stream the frame-reading threads make fronts on
        self._front_lock = threading.Lock()

    # -- building ----------------------------------------------------------------------------------------
    def open(self) -> "SweepWorker":
        from contextlib import ExitStack

        from cp_debug.models.centerpoint.presets import get_preset

        s = self.settings
        self.cfg = get_preset(s.preset)
        self.subject = build_subject(s, self.onnx_dir)
        self.order = probe_order(self.subject, s.level)
        if s.threads:
            import torch

            torch.set_num_threads(s.threads)
        self._stack = ExitStack()
        from concurrent.futures import ThreadPoolExecutor

        self._side_pool = ThreadPoolExecutor(1, thread_name_prefix="cpdebug-lane")
        try:
            calib = self._calibration()
            for label in s.backends:
                lane = self._lane(label, calib)
                self._stack.enter_context(lane.encoder.runner)
                self._stack.enter_context(lane.backbone.runner)
                self._lanes.append(lane)
        except BaseException:
            self.close()
            raise
        return self

    def _beside(self, ref_lane: "_Lane", cands: list["_Lane"]) -> list["_Lane"]:
        """The candidates that run beside the reference: ONNX Runtime lanes resident on its CUDA device (a torch
        candidate would share torch's global conv settings with the reference, so it runs after it)."""
        if not self.settings.overlap or not ref_lane.on_cuda():
            return []
        return [lane for lane in cands if not lane.spec.is_torch and lane.on_cuda()]

    def _run_beside(self, lanes: list["_Lane"], points: np.ndarray, fronts: dict) -> dict[str, Any]:
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
                    out[lane.label] = _run_lane(lane, self.cfg, points, fronts.get(lane.glue_device()))
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

    def _calibration(self) -> dict | None:
        s = self.settings
        from cp_debug.backends.spec import BackendSpec

        if not any(BackendSpec.parse(b).precision == "int8" for b in s.backends) or s.int8_dir is not None:
            return None
        from cp_debug.data.frames import calibration, points_of
        from cp_debug.eval.backend_pipeline import int8_calibration

        if s.calib_scenes < 1:
            raise BadInputError("INT8 backends need --calib-scenes >= 1")
        from cp_debug.eval.session import load_weights

        model = load_weights(s.preset, s.checkpoint, s.random_weights, s.seed).model
        frames = calibration(self.cfg, s.calib_scenes, held_out_seeds=True)
        return int8_calibration(self.cfg, model, points_of(frames, self.cfg))

    def _lane(self, label: str, calib: dict | None) -> _Lane:
        from cp_debug.backends.factory import check_available, make_runner
        from cp_debug.backends.spec import BackendSpec, Capability
        from cp_debug.determinism import Determinism

        spec = BackendSpec.parse(label)  # SPEC@DIR: the user's deployed files (torch@DIR is refused there)
        check_available(spec)
        det = Determinism(enabled=self.settings.deterministic, seed=self.settings.seed,
                          conv_algo=self.settings.cudnn_algo)
        taps, missing = [], []
        stages = self.subject.stages
        precision = spec.precision
        if spec.onnx_dir is not None:  # the files' tensors mapped onto our probes (scope names, else structure)
            from cp_debug.bisect.deployed import deployed_stages

            level = {i: stage_probes(st, self.settings.level) for i, st in enumerate(stages)}
            found = deployed_stages(spec, self.subject, level)
            stages = found.stages
            precision = found.precision if spec.precision == "fp32" else spec.precision  # as bisect grades it
        for i, st in enumerate(stages):
            probes = stage_probes(st, self.settings.level)
            if spec.is_torch:
                runner = make_runner(spec, torch_module=st.module, input_names=st.input_names,
                                     output_names=st.output_names, probe_modules=probes, determinism=det)
                rename = {p: p for p in probes}
            else:
                pm = st.probe_map()
                model = st.onnx()
                rename = {pm.tensors[p]: p for p in probes if p in pm.tensors}
                missing += [p for p in probes if p not in pm.tensors]
                kw: dict = {"determinism": det, "extra_outputs": list(rename), "threads": self.settings.threads}
                if spec.precision == "int8":
                    if self.settings.int8_dir is not None and spec.can(Capability.QDQ_MODEL):
                        kw["int8_model"] = st.qdq_onnx()
                    elif calib is not None:
                        kw["calib_feeds"] = calib["encoder" if i == 0 else "backbone"]
                runner = make_runner(spec, onnx_model=model, **kw)
            taps.append(_Tap(runner, st.output_names, rename))
        return _Lane(label, spec, taps[0], taps[1], tuple(missing), precision)

    # -- running -----------------------------------------------------------------------------------------
    def run_frames(self, items: Iterable[tuple[int, Frame]], ahead: int | None = None) -> Iterator[FrameResult]:
        """`run_frame` over (index, frame) pairs, in order, the next `ahead` frames read (a file, a bag message, a
        synthetic scene made) on helper threads while the current one runs (an awml-base held-out scene costs
        about 30 ms of one core, `benchmarks/scene_speed.py`). `ahead` defaults to `FRAMES_AHEAD` (1 on a machine of
        2 cores or fewer). On a CUDA reference with `overlap` (`_pipelined`) a frame is compared and judged while the
        next frame's reference network runs on the device (between its launch and its decode), not after its own:
        the host's 15-20 ms of comparisons and detection matching off the device's critical path."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        items = list(items)
        ahead = max(1, ahead or FRAMES_AHEAD)
        pipelined = self._pipelined()
        pending: list[_Ran] = []  # a frame whose lanes ran, judged while the next frame's reference runs
        judged: list[FrameResult] = []

        def meanwhile() -> None:
            if pending:
                ran = pending.pop()
                judged.append(_or_failed(ran.index, ran.token, self._judge, ran, self._compare_stream))

        with ThreadPoolExecutor(ahead, thread_name_prefix="cpdebug-frame") as pool:
            coming = deque(pool.submit(self._load, frame) for _, frame in items[:ahead])
            for k, (index, frame) in enumerate(items):
                loaded = coming.popleft().result()
                if k + ahead < len(items):
                    coming.append(pool.submit(self._load, items[k + ahead][1]))
                if not pipelined:
                    yield self.run_frame(index, frame, loaded)
                    continue
                ran = _or_failed(index, frame.token, self._lanes_of, index, frame.token, loaded, meanwhile)
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
        return _or_failed(index, frame.token, self._compare, index, frame, loaded)

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
            ref_res, ref_probes = _run_lane(ref_lane, self.cfg, points, fronts.get(ref_lane.glue_device()), meanwhile)
        finally:
            ran = beside.result() if beside is not None else {}  # waited for before any error leaves the frame
        got = {}
        for lane in cands:
            res = (ran[lane.label] if lane.label in ran
                   else _run_lane(lane, self.cfg, points, fronts.get(lane.glue_device())))
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
        boxes = {ref_lane.label: _boxes(ref_dets)}
        out = []
        for lane in cands:
            dets, probes = ran.cands[lane.label]
            tol = tolerance_of(lane.precision, self.settings)
            amax = lane.amax() if lane.precision == "int8" else {}
            present = [name for name in self.order
                       if name not in lane.missing and name in probes and name in ref_probes]
            items = [(n, ref_probes[n], probes[n], tol) for n in present]
            diffs = dict(zip(present, on_stream(stream, compare_values, items)))
            stats = []
            for k, name in enumerate(self.order):
                if name not in diffs:
                    stats.append(ProbeStat(name, k, math.nan, math.nan, math.nan, math.nan, 0, 0, "missing"))
                    continue
                stats.append(probe_stat(diffs[name], k, lane.precision, amax.get(name), self.settings.tolerance_mode))
            del probes, items
            delta = detection_delta(ref_dets, dets, self.cfg.class_names, self.settings.max_dist, self.cfg)
            out.append(judge_frame(lane.label, lane.precision, tuple(stats), delta, self.cfg,
                                   self.settings.tolerance_mode))
            boxes[lane.label] = _boxes(dets)
        if ran.beside and stream is None:  # the side stream's tensors go back to its pool only once torch's stream
            import torch                    # is done reading them

            torch.cuda.current_stream().synchronize()
        status = "diverged" if any(c.diverged for c in out) else "ok"
        gt_d = None if gt is None else {"boxes": gt.boxes.tolist(), "labels": gt.labels.astype(int).tolist(),
                                        "num_points": None if gt.num_points is None
                                        else gt.num_points.astype(int).tolist()}
        return FrameResult(ran.index, ran.token, status, None, int(ran.num_points), tuple(out), boxes, gt_d)


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


def _or_failed(index: int, token: str, fn, *args):
    """`fn(*args)`, or where it raises (but for Ctrl-C, exits and memory) the frame's `failed` result with its
    one-line reason: one frame's failure is recorded, the sweep goes on."""
    try:
        return fn(*args)
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - see the docstring
        return FrameResult(index, token, "failed", _one_line(err))


def _run_lane(lane: "_Lane", cfg, points: np.ndarray, front=None, meanwhile=None) -> tuple[Any, dict[str, Any]]:
    """`lane.run`, an error other than ours as one line naming the lane."""
    try:
        return lane.run(cfg, points, front, meanwhile)
    except CpDebugError:
        raise
    except Exception as err:
        raise RuntimeError(f"{lane.label}: {_one_line(err)}") from err


def compare_values(items: list[tuple]) -> list:
    """The `TensorDiff` of each (name, ref, test, tol) probe: where both values are torch tensors (a CUDA lane's), on
    their device in one fused pass each (`compare/fused_diff.py`, Triton, where it runs), the figures of all of them
    reaching the host in one copy; a tensor beside a numpy array meets it on the host."""
    from cp_debug.compare.device_diff import diff_many, is_tensor
    from cp_debug.compare.diff import TensorDiff

    on_device = [k for k, (_, ref, test, _) in enumerate(items) if is_tensor(ref) and is_tensor(test)]
    out: list = [None] * len(items)
    for k, d in zip(on_device, diff_many([items[k] for k in on_device], one_pass=True)):
        out[k] = d
    for k, (name, ref, test, tol) in enumerate(items):
        if out[k] is None:
            host = [v.detach().cpu().numpy() if is_tensor(v) else v for v in (ref, test)]
            out[k] = TensorDiff.from_arrays(name, host[0], host[1], tol)
    return out


def tolerance_of(precision: str, settings: SweepSettings):
    """The element-wise tolerance of a candidate of `precision` (as bisect's: --atol/--rtol over the default)."""
    from cp_debug.compare.diff import Tolerance, default_tolerance

    tol = default_tolerance(precision)
    return Tolerance(tol.atol if settings.atol is None else settings.atol,
                     tol.rtol if settings.rtol is None else settings.rtol, tol.max_share)


def probe_stat(d, order: int, precision: str, amax: float | None, mode: str) -> ProbeStat:
    """A probe's scalars; with mode "model" its status says whether it lies beyond its precision's noise."""
    from cp_debug.compare import noise

    j = noise.judge(d, precision, amax)
    status = noise.status_of(d, j) if mode == "model" else d.status
    return ProbeStat(d.name, order, d.rel_rmse, d.rel_max, d.cosine, d.max_abs, d.nan, d.inf, status,
                     j.expected_rel_rmse, j.noise_ratio)


def judge_frame(label: str, precision: str, stats: tuple[ProbeStat, ...], delta: DetectionDelta, cfg,
                mode: str) -> CandidateFrame:
    """One candidate on one frame: flagged (`diverged`) and its outcome on this frame alone."""
    from cp_debug.compare import noise

    bad = [p for p in stats if p.status not in ("ok", "missing")]
    if mode == "fixed":
        flagged = delta.changed or bool(bad)
        outcome = noise.Outcome.DIVERGED if flagged else noise.Outcome.WITHIN_PRECISION
        why = (f"{len(bad)} probe(s) beyond tolerance" if bad else "") + ("; boxes changed" if delta.changed else "")
        return CandidateFrame(label, stats, delta, flagged, outcome.value, why.strip("; ") or "within tolerance",
                              precision)
    boxes = judge_delta(precision, delta, cfg)
    worst = max((p for p in stats if p.status != "missing"), key=lambda p: _ratio(p), default=None)
    if any(p.status in ("nan", "shape_mismatch") for p in bad):
        p = next(p for p in bad if p.status in ("nan", "shape_mismatch"))
        outcome, why = noise.Outcome.DIVERGED, f"{p.probe}: {'NaN/Inf' if p.status == 'nan' else 'shape mismatch'}"
    elif bad:
        outcome = noise.Outcome.DEGRADED
        why = f"{len(bad)} probe(s) beyond {precision}'s noise (worst {worst.probe}, {_ratio(worst):.3g}× its budget)"
    else:
        outcome = boxes.outcome
        why = (f"every probe within {precision}'s noise (worst {_ratio(worst):.2g}× its budget)" if worst else "")
    why = f"{why}; {boxes.reason}" if why else boxes.reason
    outcome = noise.worst([outcome, boxes.outcome])
    return CandidateFrame(label, stats, delta, outcome is not noise.Outcome.WITHIN_PRECISION, outcome.value, why,
                          precision)


def judge_delta(precision: str, delta: DetectionDelta, cfg):
    """The boxes of one frame judged by `precision` (compare/noise.py: at the threshold or beyond)."""
    from cp_debug.recipes.centerpoint.detection_verdict import judge_boxes_of

    return judge_boxes_of(cfg, precision, lost_scores=delta.lost_scores, added_scores=delta.added_scores,
                          cuts=delta.score_cuts or (float(cfg.score_threshold),),
                          max_centre_shift=delta.max_centre_shift,
                          max_score_change=delta.max_score_change, max_yaw_change=delta.max_yaw_change)


def _ratio(p: ProbeStat) -> float:
    return p.noise_ratio if not math.isnan(p.noise_ratio) else 0.0


def build_subject(settings: SweepSettings, onnx_dir: Path | None = None):
    """The CenterPoint subject (modules, probe maps); its two ONNX stages loaded from `onnx_dir` when given."""
    from cp_debug.recipes.centerpoint.subject import centerpoint_subject

    subject = centerpoint_subject(preset=settings.preset, checkpoint=settings.checkpoint, seed=settings.seed,
                                  random_weights=settings.random_weights, int8=settings.int8_dir)
    if onnx_dir is not None:
        import onnx

        for st in subject.stages:
            f = Path(onnx_dir) / f"{st.name}.onnx"
            if f.is_file():
                st.onnx_model = onnx.load(str(f))
    return subject


def save_stages(subject, onnx_dir: Path) -> None:
    """Write the subject's two ONNX stages (exported once) for the workers to load."""
    from cp_debug.files import write_bytes_atomic

    for st in subject.stages:
        write_bytes_atomic(Path(onnx_dir) / f"{st.name}.onnx", st.onnx().SerializeToString(), parents=True)


def stage_probes(stage, level: str) -> list[str]:
    """The level's module probes of `stage` that have an ONNX tensor (compared on every backend alike)."""
    pm = stage.probe_map()
    return [p for p in stage.probes_at(level) if pm is not None and p in pm.tensors]


def probe_order(subject, level: str) -> list[str]:
    """Every compared name in pipeline order: encoder probes, the boundaries, backbone probes, head outputs."""
    enc, bb = subject.stages
    enc_probes = stage_probes(enc, level)
    enc_tensors = {enc.probe_map().tensors[p] for p in enc_probes}
    order = list(enc_probes) + [b for b in BOUNDARIES if b not in enc_tensors]
    return order + stage_probes(bb, level) + list(bb.output_names)


def _boxes(det) -> dict:
    return {"boxes": np.asarray(det.boxes, np.float64).tolist(), "scores": np.asarray(det.scores, np.float64).tolist(),
            "labels": np.asarray(det.labels).astype(int).tolist()}


def detection_delta(ref, cand, class_names: Sequence[str], max_dist: float, cfg=None) -> DetectionDelta:
    """Matched, lost and added boxes (overall, by class, by distance bucket) and the matched pairs' changes; with
    `cfg`, where boxes are cut by score (the threshold, a full side's lowest score)."""
    from cp_debug.compare.noise import score_cuts
    from cp_debug.recipes.centerpoint.compare_detections import compare_detections

    d = compare_detections(ref, cand, max_dist=max_dist)
    by_class = {c: [0, 0, 0] for c in class_names}
    by_range = {name: [0, 0, 0] for _, _, name in DISTANCE_BUCKETS}

    def count(slot: int, label: int, box) -> None:
        by_class[class_names[int(label)]][slot] += 1
        by_range[bucket_of(float(box[0]), float(box[1]))][slot] += 1

    for m in d.matched:
        count(0, m.label, ref.boxes[m.index_a])
    for i in d.unmatched_a:
        count(1, ref.labels[i], ref.boxes[i])
    for i in d.unmatched_b:
        count(2, cand.labels[i], cand.boxes[i])
    return DetectionDelta(d.num_a, d.num_b, d.num_matched, len(d.unmatched_a), len(d.unmatched_b),
                          d.max_centre_dist, d.mean_centre_dist, d.max_score_diff, d.max_yaw_diff, not d.unchanged,
                          by_class, by_range, tuple(float(ref.scores[i]) for i in d.unmatched_a),
                          tuple(float(cand.scores[i]) for i in d.unmatched_b),
                          () if cfg is None else score_cuts(cfg.score_threshold, cfg.post_max_size,
                                                            np.asarray(ref.scores), np.asarray(cand.scores)))


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300]}" if lines else type(err).__name__
